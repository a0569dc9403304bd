#!/usr/bin/env bash
# The page's script modules (web/www/*.js) through ESLint (web/eslint.config.mjs): every name
# defined or imported, every import used. ESLint and its browser globals come from the npm
# registry at pinned versions into web/node_modules (ignored by git), once.
set -euo pipefail
cd "$(dirname "$0")/../web"
ESLINT=9.39.5
GLOBALS=17.15.0
have() { node -e "process.exit(require('./node_modules/$1/package.json').version === '$2' ? 0 : 1)" 2>/dev/null; }
if ! have eslint "$ESLINT" || ! have globals "$GLOBALS"; then
  npm install --silent --no-save --no-package-lock --no-audit --no-fund \
    "eslint@$ESLINT" "globals@$GLOBALS" >/dev/null
fi
node node_modules/eslint/bin/eslint.js --max-warnings 0 www
echo "lint-web: web/www/*.js clean"
