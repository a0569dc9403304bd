// ESLint for the page's script modules (web/www/*.js), run by scripts/lint-web.sh: a name
// that no module defines or imports is an error (the browser would throw only when that
// line runs, which no test may reach), and so is an import that is not used.
import globals from "globals";

export default [
  {
    files: ["www/**/*.js"],
    languageOptions: { ecmaVersion: 2023, sourceType: "module", globals: { ...globals.browser } },
    rules: {
      "no-undef": "error",
      "no-unused-vars": ["error", { args: "none", caughtErrors: "none" }],
    },
  },
];
