//! Hyperparameters: the seed configuration of `design.md` §1, the TensorFlow tutorial's
//! presets, command-line flags that override them, and validation with clear errors.

use crate::data::Tokens;
use crate::error::usage;
use serde::{Deserialize, Serialize};

/// Every hyperparameter of the model and its training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Words kept in the vocabulary (most frequent first); the rest become `<unk>`.
    pub vocab_size: usize,
    /// Width of the embedding vectors.
    pub embedding_size: usize,
    /// Units of each LSTM layer, bottom first; layers may differ in width.
    pub hidden: Vec<usize>,
    /// Truncated back-propagation length.
    pub num_steps: usize,
    /// Rows of the id stream read in parallel.
    pub batch_size: usize,
    /// Parameters start uniform in [-init_scale, init_scale] (LSTM biases at zero).
    pub init_scale: f32,
    /// Plain SGD learning rate of the first epochs.
    pub learning_rate: f32,
    /// Epochs (counted from 0) before the learning rate starts to decay.
    pub max_epoch_decay_lr: usize,
    /// Learning-rate decay per epoch after `max_epoch_decay_lr`.
    pub decay: f32,
    /// Epochs to train.
    pub max_epoch: usize,
    /// Gradients are scaled by min(1, max_grad_norm / global_norm).
    pub max_grad_norm: f32,
    /// Dropout keep probability on the embedding output and every layer's output.
    pub keep_prob: f32,
    /// Added to the forget gate's pre-activation.
    pub forget_bias: f32,
    /// How the corpus (and every prompt) becomes tokens. Absent in older checkpoints: words.
    #[serde(default)]
    pub tokens: Tokens,
    /// The softmax weight is the transposed embedding (one parameter; needs
    /// `embedding_size == top hidden size`). Absent in older checkpoints: untied.
    #[serde(default)]
    pub tie_weights: bool,
    /// Arithmetic of the matmuls: f32, or f16 operands with f32 sums and dynamic loss
    /// scaling (`--precision mixed`). Absent in older checkpoints: f32.
    #[serde(default)]
    pub precision: Precision,
    /// How the learning rate changes from epoch to epoch. Absent in older checkpoints: the
    /// tutorial's.
    #[serde(default)]
    pub lr_schedule: LrSchedule,
}

/// How the learning rate changes from epoch to epoch (`--lr-schedule`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// The TensorFlow tutorial's: `learning_rate` for the first `max_epoch_decay_lr + 1`
    /// epochs, then times `decay` every epoch.
    #[default]
    Tutorial,
    /// Times `decay` after every epoch that does not lower the validation perplexity below
    /// the run's best so far, as PyTorch's word-language-model example anneals (there with
    /// decay 0.25); `max_epoch_decay_lr` plays no part.
    Plateau,
}

impl std::fmt::Display for LrSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LrSchedule::Tutorial => "tutorial",
            LrSchedule::Plateau => "plateau",
        })
    }
}

/// What the matmuls of a step compute in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// The matmuls read f16 copies of their operands (weights cast once per step, the
    /// cell's outputs written in f16 beside f32, other inputs cast once) and sum in f32; parameters, the SGD
    /// update, the cell's gate math, softmax, cross-entropy and every reduction stay f32.
    /// Gradients are kept from underflowing f16 by dynamic loss scaling. Needs an adapter
    /// with `shader-f16`.
    Mixed,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Mixed => "mixed",
        }
    }
}

/// The named configurations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum Preset {
    /// design.md §1: embedding 200, hidden [256, 128], batch 60, 20 steps, 15 epochs.
    Seed,
    /// TensorFlow tutorial "small": 2x200, batch 20, 20 steps, 13 epochs, the rate halved
    /// from the 5th.
    Small,
    /// TensorFlow tutorial "medium": 2x650, batch 20, 35 steps, keep_prob 0.5, 39 epochs,
    /// the rate times 0.8 from the 7th.
    Medium,
    /// TensorFlow tutorial "large": 2x1500, batch 20, 35 steps, keep_prob 0.35, clip 10,
    /// 55 epochs, the rate divided by 1.15 from the 15th.
    Large,
}

impl Preset {
    pub const ALL: [Preset; 4] = [Preset::Seed, Preset::Small, Preset::Medium, Preset::Large];

    /// Its name, as `--preset` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Seed => "seed",
            Preset::Small => "small",
            Preset::Medium => "medium",
            Preset::Large => "large",
        }
    }

    /// What the TensorFlow tutorial's README reports for this model after its whole schedule
    /// (one run each), and Zaremba et al. 2014's test perplexity of the same model; `None`
    /// for the seed model, the course's own configuration.
    pub fn published(self) -> Option<Published> {
        let (train, valid, test, zaremba_test) = match self {
            Preset::Seed => return None,
            Preset::Small => (37.99, 121.39, 115.91, None),
            Preset::Medium => (48.45, 86.16, 82.07, Some(82.7)),
            Preset::Large => (37.87, 82.62, 78.29, Some(78.4)),
        };
        Some(Published {
            train,
            valid,
            test,
            zaremba_test,
        })
    }
}

/// Published perplexities of a preset's model ([`Preset::published`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Published {
    pub train: f64,
    pub valid: f64,
    pub test: f64,
    /// Zaremba et al. 2014, "Recurrent Neural Network Regularization", where the paper has
    /// the model.
    pub zaremba_test: Option<f64>,
}

impl Default for Config {
    fn default() -> Self {
        Config::preset(Preset::Seed)
    }
}

impl Config {
    /// The preset this configuration is, where it is one exactly (its precision aside).
    pub fn preset_of(&self) -> Option<Preset> {
        Preset::ALL.into_iter().find(|&p| {
            let preset = Config {
                precision: self.precision,
                ..Config::preset(p)
            };
            preset == *self
        })
    }

    pub fn preset(preset: Preset) -> Config {
        let seed = Config {
            vocab_size: 10_000,
            embedding_size: 200,
            hidden: vec![256, 128],
            num_steps: 20,
            batch_size: 60,
            init_scale: 0.1,
            learning_rate: 1.0,
            max_epoch_decay_lr: 4,
            decay: 0.5,
            max_epoch: 15,
            max_grad_norm: 5.0,
            keep_prob: 1.0,
            forget_bias: 0.0,
            tokens: Tokens::Words,
            tie_weights: false,
            precision: Precision::F32,
            lr_schedule: LrSchedule::Tutorial,
        };
        match preset {
            Preset::Seed => seed,
            Preset::Small => Config {
                embedding_size: 200,
                hidden: vec![200, 200],
                batch_size: 20,
                num_steps: 20,
                init_scale: 0.1,
                max_epoch: 13,
                max_epoch_decay_lr: 3,
                decay: 0.5,
                keep_prob: 1.0,
                max_grad_norm: 5.0,
                ..seed
            },
            Preset::Medium => Config {
                embedding_size: 650,
                hidden: vec![650, 650],
                batch_size: 20,
                num_steps: 35,
                init_scale: 0.05,
                max_epoch: 39,
                max_epoch_decay_lr: 5,
                decay: 0.8,
                keep_prob: 0.5,
                max_grad_norm: 5.0,
                ..seed
            },
            Preset::Large => Config {
                embedding_size: 1500,
                hidden: vec![1500, 1500],
                batch_size: 20,
                num_steps: 35,
                init_scale: 0.04,
                max_epoch: 55,
                max_epoch_decay_lr: 13,
                decay: 1.0 / 1.15,
                keep_prob: 0.35,
                max_grad_norm: 10.0,
                ..seed
            },
        }
    }

    /// The learning rate a run starts with: the schedule's for the first epoch.
    pub fn first_lr(&self) -> f32 {
        match self.lr_schedule {
            LrSchedule::Tutorial => self.lr_for_epoch(0),
            LrSchedule::Plateau => self.learning_rate,
        }
    }

    /// Learning rate of epoch `epoch` (counted from 0) in the tutorial's schedule:
    /// `learning_rate * decay^max(epoch - max_epoch_decay_lr, 0)`.
    pub fn lr_for_epoch(&self, epoch: usize) -> f32 {
        let e = epoch.saturating_sub(self.max_epoch_decay_lr) as i32;
        (self.learning_rate as f64 * (self.decay as f64).powi(e)) as f32
    }

    /// Input width of LSTM layer `layer`: the embedding for the first, the previous
    /// layer's hidden size for the others.
    pub fn layer_input(&self, layer: usize) -> usize {
        if layer == 0 {
            self.embedding_size
        } else {
            self.hidden[layer - 1]
        }
    }

    /// Hidden size of the top layer (the softmax input).
    pub fn top_hidden(&self) -> usize {
        *self.hidden.last().expect("validated config has layers")
    }

    /// Check every value; the error names the flag and says what is allowed.
    pub fn validate(&self) -> anyhow::Result<()> {
        let positive = [
            ("--vocab-size", self.vocab_size),
            ("--embedding-size", self.embedding_size),
            ("--num-steps", self.num_steps),
            ("--batch-size", self.batch_size),
        ];
        for (flag, v) in positive {
            if v == 0 {
                return Err(usage(format!("{flag} must be at least 1, got 0")));
            }
        }
        // Far beyond any adapter's buffers; the bound keeps every size product in range.
        const MAX_DIM: usize = 1 << 24;
        let dims = [
            ("--vocab-size", self.vocab_size),
            ("--embedding-size", self.embedding_size),
            ("--num-steps", self.num_steps),
            ("--batch-size", self.batch_size),
        ];
        for (flag, v) in dims
            .into_iter()
            .chain(self.hidden.iter().map(|&h| ("--hidden", h)))
        {
            if v > MAX_DIM {
                return Err(usage(format!(
                    "{flag} {v} is larger than any adapter can hold (at most {MAX_DIM})"
                )));
            }
        }
        if self.hidden.len() > 64 {
            return Err(usage(format!(
                "--hidden lists {} layers; at most 64 are supported",
                self.hidden.len()
            )));
        }
        if self.vocab_size < 2 {
            return Err(usage(
                "--vocab-size must be at least 2 (a language model needs a choice)",
            ));
        }
        if self.hidden.is_empty() {
            return Err(usage(
                "--hidden needs at least one layer size, e.g. --hidden 256,128",
            ));
        }
        if let Some(i) = self.hidden.iter().position(|&h| h == 0) {
            return Err(usage(format!(
                "--hidden: layer {} has size 0; every layer needs at least 1 unit",
                i + 1
            )));
        }
        let finite_pos = |flag: &str, v: f32, allow_zero: bool| -> anyhow::Result<()> {
            if !v.is_finite() || v < 0.0 || (!allow_zero && v == 0.0) {
                let want = if allow_zero { ">= 0" } else { "> 0" };
                return Err(usage(format!(
                    "{flag} must be a finite number {want}, got {v}"
                )));
            }
            Ok(())
        };
        finite_pos("--init-scale", self.init_scale, true)?;
        finite_pos("--learning-rate", self.learning_rate, true)?;
        finite_pos("--decay", self.decay, false)?;
        if self.lr_schedule == LrSchedule::Plateau && self.decay > 1.0 {
            // PyTorch's example writes `lr /= 4.0`: a 4 here is likely meant as 0.25.
            return Err(usage(format!(
                "--decay {} would raise the rate after every epoch without improvement: \
                 --lr-schedule plateau multiplies the rate by --decay (dividing by 4 is \
                 --decay {})",
                self.decay,
                1.0 / self.decay
            )));
        }
        finite_pos("--max-grad-norm", self.max_grad_norm, false)?;
        if !self.forget_bias.is_finite() {
            return Err(usage(format!(
                "--forget-bias must be finite, got {}",
                self.forget_bias
            )));
        }
        if !(self.keep_prob > 0.0 && self.keep_prob <= 1.0) {
            return Err(usage(format!(
                "--keep-prob must be in (0, 1], got {} (1 disables dropout)",
                self.keep_prob
            )));
        }
        if self.max_epoch == 0 {
            return Err(usage("--max-epoch must be at least 1"));
        }
        if self.tie_weights && self.embedding_size != self.top_hidden() {
            return Err(usage(format!(
                "--tie-weights needs --embedding-size equal to the top layer's hidden size \
                 (the softmax weight is the transposed embedding), got embedding {} and top \
                 hidden {}",
                self.embedding_size,
                self.top_hidden()
            )));
        }
        Ok(())
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> usize {
        let mut n = self.vocab_size * self.embedding_size;
        for (l, &h) in self.hidden.iter().enumerate() {
            n += (self.layer_input(l) + h) * 4 * h + 4 * h;
        }
        if !self.tie_weights {
            n += self.top_hidden() * self.vocab_size;
        }
        n + self.vocab_size
    }

    /// Forward FLOPs per token (multiply-adds count 2): every LSTM layer's matmul and
    /// the softmax projection. Training costs about three times this.
    pub fn forward_flops_per_token(&self) -> f64 {
        let mut f = 0.0;
        for (l, &h) in self.hidden.iter().enumerate() {
            f += 2.0 * ((self.layer_input(l) + h) * 4 * h) as f64;
        }
        f + 2.0 * (self.top_hidden() * self.vocab_size) as f64
    }
}

/// The model and training flags shared by `train`, `data info`, `profile` and `bench`.
/// Every flag left out keeps the preset's value.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ConfigArgs {
    /// Start from a named configuration; the flags below override single values.
    #[arg(long, value_enum, default_value = "seed")]
    pub preset: Option<Preset>,
    /// Keep only the N most frequent tokens of the training text, the rest read as `<unk>`
    /// (added when the text has none) [default: every distinct token of the training text;
    /// 10000 on PTB].
    #[arg(long)]
    pub vocab_size: Option<usize>,
    /// Tokens: whitespace-separated words (a newline is `<eos>`), or every character (a
    /// newline is `<eos>`) [default: words, TensorFlow's PTB reader; words-eos for a text
    /// where a line end touches a word, which `words` would glue on].
    #[arg(long, value_enum)]
    pub tokens: Option<Tokens>,
    /// Tie the input and output embeddings: the softmax weight is the transposed embedding
    /// (Press & Wolf 2017), one parameter; needs --embedding-size equal to the top hidden size.
    #[arg(long)]
    pub tie_weights: bool,
    /// Embedding width [seed: 200].
    #[arg(long)]
    pub embedding_size: Option<usize>,
    /// Hidden size of each LSTM layer, bottom first [seed: 256,128].
    #[arg(long, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
    /// Truncated back-propagation steps [seed: 20].
    #[arg(long)]
    pub num_steps: Option<usize>,
    /// Batch size [seed: 60].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Uniform initialisation range [seed: 0.1].
    #[arg(long)]
    pub init_scale: Option<f32>,
    /// Initial SGD learning rate [seed: 1.0].
    #[arg(long, allow_negative_numbers = true)]
    pub learning_rate: Option<f32>,
    /// N in the schedule: epoch e (counted from 0) trains at learning_rate *
    /// decay^max(e - N, 0), so N + 1 epochs run undecayed [seed: 4; 3 reproduces the
    /// TensorFlow tutorial code's schedule, which decays from its 5th epoch].
    #[arg(long)]
    pub max_epoch_decay_lr: Option<usize>,
    /// Learning-rate decay per epoch [seed: 0.5]; with `--lr-schedule plateau`, per epoch
    /// that did not improve (PyTorch's word-language-model example: 0.25).
    #[arg(long, allow_negative_numbers = true)]
    pub decay: Option<f32>,
    /// How the learning rate changes: `tutorial` (times --decay every epoch after the
    /// first --max-epoch-decay-lr + 1), or `plateau` (times --decay after every epoch whose
    /// validation perplexity is not below the run's best so far) [default: tutorial].
    #[arg(long, value_enum)]
    pub lr_schedule: Option<LrSchedule>,
    /// Epochs to train [seed: 15].
    #[arg(long, alias = "epochs")]
    pub max_epoch: Option<usize>,
    /// Global gradient-norm clip [seed: 5].
    #[arg(long, allow_negative_numbers = true)]
    pub max_grad_norm: Option<f32>,
    /// Dropout keep probability, 1 disables dropout [seed: 1.0].
    #[arg(long, allow_negative_numbers = true)]
    pub keep_prob: Option<f32>,
    /// Added to the forget gate's pre-activation [seed: 0.0].
    #[arg(long, allow_negative_numbers = true)]
    pub forget_bias: Option<f32>,
    /// Matmul arithmetic: f32, or mixed (f16 operands, f32 sums, dynamic loss scaling; needs
    /// an adapter with shader-f16) [default: f32].
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
}

impl ConfigArgs {
    /// The preset with every given flag applied, validated.
    pub fn resolve(&self) -> anyhow::Result<Config> {
        let mut c = Config::preset(self.preset.unwrap_or(Preset::Seed));
        self.apply(&mut c);
        c.validate()?;
        Ok(c)
    }

    /// Apply only the flags that were given (used on top of a checkpoint's config too).
    pub fn apply(&self, c: &mut Config) {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f.clone() { c.$f = v; } )* };
        }
        set!(
            vocab_size,
            embedding_size,
            hidden,
            num_steps,
            batch_size,
            init_scale,
            learning_rate,
            max_epoch_decay_lr,
            decay,
            max_epoch,
            max_grad_norm,
            keep_prob,
            forget_bias,
            tokens,
            precision,
            lr_schedule
        );
        if self.tie_weights {
            c.tie_weights = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_matches_design() {
        let c = Config::default();
        assert_eq!(c.hidden, vec![256, 128]);
        assert_eq!((c.batch_size, c.num_steps, c.vocab_size), (60, 20, 10_000));
        assert_eq!(c.lr_for_epoch(0), 1.0);
        assert_eq!(c.lr_for_epoch(4), 1.0);
        assert_eq!(c.lr_for_epoch(5), 0.5);
        assert_eq!(c.lr_for_epoch(14), 1.0 / 1024.0);
        // design.md §1: about 3.9 MFLOP forward per token.
        let f = c.forward_flops_per_token();
        assert!((f / 1e6 - 3.88).abs() < 0.05, "{f}");
        c.validate().unwrap();
    }

    /// Checkpoints written before `tokens` and `tie_weights` existed read as words, untied.
    #[test]
    fn older_configs_read_as_words_untied() {
        let mut json: serde_json::Value = serde_json::to_value(Config::default()).unwrap();
        let map = json.as_object_mut().unwrap();
        assert!(map.remove("tokens").is_some() && map.remove("tie_weights").is_some());
        let c: Config = serde_json::from_value(json).unwrap();
        assert_eq!((c.tokens, c.tie_weights), (Tokens::Words, false));
        // Before --lr-schedule: the tutorial's schedule.
        let mut json: serde_json::Value = serde_json::to_value(Config::default()).unwrap();
        assert!(json
            .as_object_mut()
            .unwrap()
            .remove("lr_schedule")
            .is_some());
        let c: Config = serde_json::from_value(json).unwrap();
        assert_eq!(c.lr_schedule, LrSchedule::Tutorial);
        let chars = Config {
            tokens: Tokens::Chars,
            ..Config::default()
        };
        let text = serde_json::to_string(&chars).unwrap();
        assert!(text.contains("\"tokens\":\"chars\""), "{text}");
        assert_eq!(serde_json::from_str::<Config>(&text).unwrap(), chars);
    }

    #[test]
    fn tied_weights_need_the_embedding_as_wide_as_the_top_layer() {
        let bad = Config {
            tie_weights: true,
            ..Config::default()
        };
        let e = bad.validate().unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2);
        assert!(e.to_string().contains("--tie-weights"), "{e}");
        let good = Config {
            embedding_size: 128,
            ..bad
        };
        good.validate().unwrap();
        let untied = Config {
            tie_weights: false,
            ..good.clone()
        };
        assert_eq!(untied.num_params() - good.num_params(), 128 * 10_000);
    }

    #[test]
    fn presets_are_valid() {
        for p in [Preset::Seed, Preset::Small, Preset::Medium, Preset::Large] {
            Config::preset(p).validate().unwrap();
        }
    }

    /// One of the TensorFlow tutorial's configurations (ptb_word_lm.py), in its own terms.
    struct TutorialConfig {
        init_scale: f32,
        learning_rate: f32,
        max_grad_norm: f32,
        num_steps: usize,
        hidden_size: usize,
        /// Epochs (counted from 1) run at the full learning rate.
        max_epoch: usize,
        max_max_epoch: usize,
        keep_prob: f32,
        lr_decay: f32,
        batch_size: usize,
    }

    /// The tutorial's SmallConfig, MediumConfig and LargeConfig (num_layers 2, vocab 10000,
    /// embedding size = hidden size in all three).
    const TUTORIAL: [(Preset, TutorialConfig); 3] = [
        (
            Preset::Small,
            TutorialConfig {
                init_scale: 0.1,
                learning_rate: 1.0,
                max_grad_norm: 5.0,
                num_steps: 20,
                hidden_size: 200,
                max_epoch: 4,
                max_max_epoch: 13,
                keep_prob: 1.0,
                lr_decay: 0.5,
                batch_size: 20,
            },
        ),
        (
            Preset::Medium,
            TutorialConfig {
                init_scale: 0.05,
                learning_rate: 1.0,
                max_grad_norm: 5.0,
                num_steps: 35,
                hidden_size: 650,
                max_epoch: 6,
                max_max_epoch: 39,
                keep_prob: 0.5,
                lr_decay: 0.8,
                batch_size: 20,
            },
        ),
        (
            Preset::Large,
            TutorialConfig {
                init_scale: 0.04,
                learning_rate: 1.0,
                max_grad_norm: 10.0,
                num_steps: 35,
                hidden_size: 1500,
                max_epoch: 14,
                max_max_epoch: 55,
                keep_prob: 0.35,
                lr_decay: 1.0 / 1.15,
                batch_size: 20,
            },
        ),
    ];

    /// Each preset is the tutorial's configuration, and its learning rate in every epoch is
    /// the tutorial's `lr_decay ** max(i + 1 - max_epoch, 0)` (i counted from 0), so the
    /// first decayed epoch is the tutorial's `max_epoch + 1`.
    #[test]
    fn presets_are_the_tensorflow_tutorials() {
        for (preset, tf) in TUTORIAL {
            let c = Config::preset(preset);
            let h = tf.hidden_size;
            assert_eq!(c.hidden, vec![h, h], "{preset:?}");
            assert_eq!(c.embedding_size, h, "{preset:?}");
            assert_eq!(c.vocab_size, 10_000, "{preset:?}");
            assert_eq!(c.init_scale, tf.init_scale, "{preset:?}");
            assert_eq!(c.learning_rate, tf.learning_rate, "{preset:?}");
            assert_eq!(c.max_grad_norm, tf.max_grad_norm, "{preset:?}");
            assert_eq!(c.num_steps, tf.num_steps, "{preset:?}");
            assert_eq!(c.batch_size, tf.batch_size, "{preset:?}");
            assert_eq!(c.max_epoch, tf.max_max_epoch, "{preset:?}");
            assert_eq!(c.keep_prob, tf.keep_prob, "{preset:?}");
            assert_eq!(c.decay, tf.lr_decay, "{preset:?}");
            assert_eq!(c.forget_bias, 0.0, "{preset:?}");
            assert!(!c.tie_weights, "{preset:?}");
            for i in 0..tf.max_max_epoch {
                let e = (i + 1).saturating_sub(tf.max_epoch) as i32;
                let tutorial = (tf.learning_rate as f64 * (tf.lr_decay as f64).powi(e)) as f32;
                assert_eq!(c.lr_for_epoch(i), tutorial, "{preset:?} epoch {i}");
            }
        }
        // The seed is the course notebook's schedule: five full-rate epochs, one more than
        // the tutorial's code would run at its max_epoch 4.
        let seed = Config::preset(Preset::Seed);
        assert_eq!((seed.lr_for_epoch(4), seed.lr_for_epoch(5)), (1.0, 0.5));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        let bad = [
            Config {
                hidden: vec![],
                ..Config::default()
            },
            Config {
                hidden: vec![4, 0],
                ..Config::default()
            },
            Config {
                keep_prob: 0.0,
                ..Config::default()
            },
            Config {
                keep_prob: 1.5,
                ..Config::default()
            },
            Config {
                learning_rate: -1.0,
                ..Config::default()
            },
            Config {
                batch_size: 0,
                ..Config::default()
            },
            Config {
                init_scale: f32::NAN,
                ..Config::default()
            },
        ];
        for c in bad {
            let e = c.validate().unwrap_err();
            assert_eq!(crate::error::exit_code(&e), 2, "{e}");
            assert!(!format!("{e:#}").contains('\n'));
        }
        // PyTorch's `lr /= 4.0` read as --decay 4: refused with the value meant.
        let plateau = |decay| Config {
            lr_schedule: LrSchedule::Plateau,
            decay,
            ..Config::default()
        };
        let e = plateau(4.0).validate().unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2);
        assert!(e.to_string().contains("--decay 0.25"), "{e}");
        assert!(
            !e.to_string().contains("  "),
            "one line, single-spaced: {e}"
        );
        plateau(0.25).validate().unwrap();
        plateau(1.0).validate().unwrap();
    }
}
