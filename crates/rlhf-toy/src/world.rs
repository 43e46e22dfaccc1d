//! The toy world: users, prompts, demonstrations and a pretraining corpus, all seeded.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rand::distributions::{Distribution, WeightedIndex};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::conduct::{with_habits, Constraint, ToyPrompt, FILLERS, SIGNOFFS};
use super::labeler::LabelerPool;
use super::task::{
    corrupt_n, random_sentence, sample_candidates, Category, Style, TaskKind, ToyTask,
    TOY_MAX_PROMPT_TOKENS, TOY_MAX_RESPONSE_TOKENS,
};
use super::vocab::{save_toy_tokenizer, Pool, WordKind, DIGITS, LETTERS};
use rlhf_data::error::{Error, Result};
use rlhf_data::records::{write_jsonl, Demonstration, PretrainText, PromptRecord, Ranking, Source};

/// Relative frequency of the three prompt styles.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StyleWeights {
    /// Plain queries. Default: 0.35.
    pub plain: f64,
    /// Few-shot prompts. Default: 0.25.
    pub few_shot: f64,
    /// Instructions. Default: 0.40.
    pub instruction: f64,
}

impl Default for StyleWeights {
    fn default() -> Self {
        StyleWeights {
            plain: 0.35,
            few_shot: 0.25,
            instruction: 0.40,
        }
    }
}

/// The demonstrators' habits and the prompts' explicit constraints (see [`super::ToyPrompt`]
/// for how labelers judge them). [`HabitConfig::none`] gives the correctness-only world.
///
/// Demonstrations are written by `demonstrators` people; demonstrator `j` of `n` has personal
/// rates `rate * 2j / (n - 1)` (clamped to 1) for each habit, so some never show it and some
/// always do, and every demonstration is written by one of them drawn at random.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HabitConfig {
    /// Number of demonstrators. Default: 12.
    pub demonstrators: usize,
    /// Mean rate of opening with a filler phrase (`sure`, `okay so`, ...). Default: 0.6.
    pub filler_rate: f64,
    /// Mean rate of closing with a sign-off (`hope this helps`, ...). Default: 0.4.
    pub sign_off_rate: f64,
    /// Mean rate of ignoring a prompt's `answer only :` constraint (and writing with one's
    /// habits anyway). Default: 0.3.
    pub ignore_constraint_rate: f64,
    /// Fraction of prompts with the `answer only :` constraint. Default: 0.3.
    pub constraint_rate: f64,
}

impl Default for HabitConfig {
    fn default() -> Self {
        HabitConfig {
            demonstrators: 12,
            filler_rate: 0.6,
            sign_off_rate: 0.4,
            ignore_constraint_rate: 0.3,
            constraint_rate: 0.3,
        }
    }
}

impl HabitConfig {
    /// No habits and no constraints: the correctness-only world (an ablation where RL is not
    /// expected to beat SFT).
    pub fn none() -> Self {
        HabitConfig {
            filler_rate: 0.0,
            sign_off_rate: 0.0,
            ignore_constraint_rate: 0.0,
            constraint_rate: 0.0,
            ..HabitConfig::default()
        }
    }

    /// True when demonstrations have no habit and prompts no constraint.
    pub fn is_none(&self) -> bool {
        self.filler_rate == 0.0 && self.sign_off_rate == 0.0 && self.constraint_rate == 0.0
    }

    fn validate(&self) -> Result<()> {
        if self.demonstrators == 0 {
            return Err(Error::Config(
                "habits.demonstrators is 0: expected at least 1".into(),
            ));
        }
        for (name, v) in [
            ("filler_rate", self.filler_rate),
            ("sign_off_rate", self.sign_off_rate),
            ("ignore_constraint_rate", self.ignore_constraint_rate),
            ("constraint_rate", self.constraint_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::Config(format!(
                    "habits.{name} is {v}: expected a value in [0, 1]"
                )));
            }
        }
        Ok(())
    }

    /// Demonstrator `j`'s personal rate for a habit of mean rate `rate`.
    fn personal(&self, rate: f64, j: usize) -> f64 {
        let m = if self.demonstrators == 1 {
            1.0
        } else {
            2.0 * j as f64 / (self.demonstrators - 1) as f64
        };
        (rate * m).min(1.0)
    }
}

/// Options of the toy world. Every size is an option; the same config gives the same world.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToyConfig {
    /// Seed of everything. Default: 0.
    pub seed: u64,
    /// Users whose prompts form the training pools. Default: 400.
    pub num_users: usize,
    /// Further users whose prompts are held out for evaluation. Default: 100.
    pub heldout_users: usize,
    /// Fewest prompts per user. Default: 1.
    pub min_prompts_per_user: usize,
    /// Most prompts per user. Default: 250 (above the paper's cap of 200, so capping matters).
    pub max_prompts_per_user: usize,
    /// Tail index of the Pareto law of prompts per user (smaller = heavier tail). Default: 1.3,
    /// about 4 prompts per user on average with a few very active users.
    pub prompts_tail_alpha: f64,
    /// Fraction of users who are labelers (the rest are customers). Default: 0.2.
    pub labeler_user_fraction: f64,
    /// Relative weight of each category. Default: equal weights, so every category has enough
    /// data for a tiny model; [`ToyConfig::paper_category_weights`] gives the paper's mix.
    pub category_weights: BTreeMap<Category, f64>,
    /// Relative weight of each prompt style.
    pub style_weights: StyleWeights,
    /// Longest list in a task (3..=8). Default: 6.
    pub max_items: usize,
    /// Probability that a demonstration is slightly wrong (one corruption). Default: 0.15.
    pub demo_error_rate: f64,
    /// Pretraining documents. Default: 4000.
    pub pretrain_docs: usize,
    /// Held-out pretraining documents (for the pretraining loss). Default: 400.
    pub heldout_pretrain_docs: usize,
    /// Fraction of pretraining segments that are solved plain-style tasks (with the same error
    /// rate as demonstrations). Default: 0.15.
    pub pretrain_task_fraction: f64,
    /// Whether the solved tasks of the pretraining corpus are written by the same kind of people
    /// as the demonstrations: with their habits (the same [`HabitConfig`] writers, fillers and
    /// sign-offs at the same rates) and, for a share `habits.constraint_rate` of them, an
    /// `answer only :` request that the writer ignores at the same rate. Default: true.
    ///
    /// InstructGPT's base model was pretrained on the internet, written by people like its
    /// demonstrators; a base model that never saw a habit writes none and beats the SFT model
    /// on conduct alone. `false` gives the corpus of plain answers (an ablation). No effect
    /// without habits ([`HabitConfig::is_none`]).
    pub pretrain_habits: bool,
    /// Demonstrators' habits and prompts' constraints. Default: [`HabitConfig::default`];
    /// [`ToyConfig::correctness_only`] turns them off.
    pub habits: HabitConfig,
}

impl Default for ToyConfig {
    fn default() -> Self {
        ToyConfig {
            seed: 0,
            num_users: 400,
            heldout_users: 100,
            min_prompts_per_user: 1,
            max_prompts_per_user: 250,
            prompts_tail_alpha: 1.3,
            labeler_user_fraction: 0.2,
            category_weights: Category::ALL.iter().map(|&c| (c, 1.0)).collect(),
            style_weights: StyleWeights::default(),
            max_items: 6,
            demo_error_rate: 0.15,
            pretrain_docs: 4000,
            heldout_pretrain_docs: 400,
            pretrain_task_fraction: 0.15,
            pretrain_habits: true,
            habits: HabitConfig::default(),
        }
    }
}

impl ToyConfig {
    /// The correctness-only world: no demonstrator habits, no constraints, so the gold score
    /// is correctness alone and rankings of a model's samples teach nothing the demonstrations
    /// did not (the ablation).
    pub fn correctness_only() -> Self {
        ToyConfig {
            habits: HabitConfig::none(),
            ..ToyConfig::default()
        }
    }

    /// The paper's category shares (Table 1) for the categories with a toy counterpart.
    pub fn paper_category_weights() -> BTreeMap<Category, f64> {
        Category::ALL
            .iter()
            .map(|&c| (c, c.paper_share()))
            .collect()
    }

    /// Checks the options; the message says what to change.
    pub fn validate(&self) -> Result<()> {
        self.habits.validate()?;
        let bad = |m: String| Err(Error::Config(m));
        if self.num_users == 0 {
            return bad("num_users is 0: expected at least 1".into());
        }
        if self.min_prompts_per_user == 0 || self.max_prompts_per_user < self.min_prompts_per_user {
            return bad(format!(
                "prompts per user {}..={}: expected 1 <= min_prompts_per_user <= max_prompts_per_user",
                self.min_prompts_per_user, self.max_prompts_per_user
            ));
        }
        if !(self.prompts_tail_alpha.is_finite() && self.prompts_tail_alpha > 0.0) {
            return bad(format!(
                "prompts_tail_alpha is {}: expected a finite value > 0",
                self.prompts_tail_alpha
            ));
        }
        for (name, v) in [
            ("labeler_user_fraction", self.labeler_user_fraction),
            ("demo_error_rate", self.demo_error_rate),
            ("pretrain_task_fraction", self.pretrain_task_fraction),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(format!("{name} is {v}: expected a value in [0, 1]"));
            }
        }
        if self
            .category_weights
            .values()
            .any(|w| !(w.is_finite() && *w >= 0.0))
            || self.category_weights.values().sum::<f64>() <= 0.0
        {
            return bad(
                "category_weights: expected finite, non-negative weights with a positive sum"
                    .into(),
            );
        }
        let s = self.style_weights;
        let sw = [s.plain, s.few_shot, s.instruction];
        if sw.iter().any(|w| !(w.is_finite() && *w >= 0.0)) || sw.iter().sum::<f64>() <= 0.0 {
            return bad(
                "style_weights: expected finite, non-negative weights with a positive sum".into(),
            );
        }
        if !(3..=8).contains(&self.max_items) {
            return bad(format!(
                "max_items is {}: expected a value in 3..=8 (prompts must stay within {} tokens)",
                self.max_items, TOY_MAX_PROMPT_TOKENS
            ));
        }
        Ok(())
    }
}

/// A generated toy world.
///
/// Training users' prompts (`prompts`) and demonstrations (`demonstrations`, one per prompt,
/// same index, same user) are separate from held-out users' (`heldout_*`), so evaluation is on
/// users never seen in training, as in the paper. Every prompt's task is known
/// ([`ToyWorld::task`]) and can also be parsed back from its text ([`ToyTask::from_prompt`]).
#[derive(Debug, Clone)]
pub struct ToyWorld {
    /// The configuration it was made from.
    pub config: ToyConfig,
    /// Training users' prompts.
    pub prompts: Vec<PromptRecord>,
    /// Labeler demonstrations for `prompts` (same order); mostly, not always, correct.
    pub demonstrations: Vec<Demonstration>,
    /// Held-out users' prompts.
    pub heldout_prompts: Vec<PromptRecord>,
    /// Demonstrations for `heldout_prompts` (same order).
    pub heldout_demonstrations: Vec<Demonstration>,
    /// Pretraining corpus (same language).
    pub pretrain: Vec<PretrainText>,
    /// Held-out pretraining documents.
    pub heldout_pretrain: Vec<PretrainText>,
    tasks: HashMap<String, ToyPrompt>,
}

fn pareto_count<R: Rng + ?Sized>(rng: &mut R, cfg: &ToyConfig) -> usize {
    let u: f64 = 1.0 - rng.gen::<f64>(); // (0, 1]
    let x = cfg.min_prompts_per_user as f64 * u.powf(-1.0 / cfg.prompts_tail_alpha);
    (x.floor() as usize).clamp(cfg.min_prompts_per_user, cfg.max_prompts_per_user)
}

fn token_count(s: &str) -> usize {
    s.split_whitespace().count()
}

/// A demonstration written by demonstrator `j` with its habits: the answer of
/// [`demonstration_text`], with a filler phrase and a sign-off at the demonstrator's rates
/// (none when the prompt asks for the answer only, unless the demonstrator ignores it).
fn demonstration_with_habits<R: Rng + ?Sized>(
    prompt: &ToyPrompt,
    cfg: &ToyConfig,
    rng: &mut R,
) -> String {
    let answer = demonstration_text(&prompt.task, cfg.demo_error_rate, rng);
    let h = &cfg.habits;
    if h.is_none() {
        return answer;
    }
    let j = rng.gen_range(0..h.demonstrators);
    let obeys =
        prompt.constraint.is_none() || !rng.gen_bool(h.personal(h.ignore_constraint_rate, j));
    let filler = rng.gen_bool(h.personal(h.filler_rate, j));
    let sign_off = rng.gen_bool(h.personal(h.sign_off_rate, j));
    let (fi, si) = (
        rng.gen_range(0..FILLERS.len()),
        rng.gen_range(0..SIGNOFFS.len()),
    );
    if prompt.constraint.is_some() && obeys {
        return answer;
    }
    let text = with_habits(&answer, filler.then_some(fi), sign_off.then_some(si));
    if token_count(&text) <= TOY_MAX_RESPONSE_TOKENS {
        text
    } else {
        answer
    }
}

/// A demonstration for a task: a reference answer, corrupted once with probability
/// `error_rate` (never blank, never longer than the response limit).
fn demonstration_text<R: Rng + ?Sized>(task: &ToyTask, error_rate: f64, rng: &mut R) -> String {
    let reference = task.reference_response(rng);
    if rng.gen_bool(error_rate) {
        for _ in 0..10 {
            let c = corrupt_n(&reference, 1, rng);
            if !c.trim().is_empty() && token_count(&c) <= TOY_MAX_RESPONSE_TOKENS {
                return c;
            }
        }
    }
    reference
}

impl ToyWorld {
    /// Generates the world (a few milliseconds at default sizes).
    pub fn generate(config: &ToyConfig) -> Result<ToyWorld> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let cats: Vec<(Category, f64)> = config
            .category_weights
            .iter()
            .map(|(&c, &w)| (c, w))
            .collect();
        let cat_dist = WeightedIndex::new(cats.iter().map(|c| c.1))
            .map_err(|e| Error::Config(format!("category_weights: {e}")))?;
        let s = config.style_weights;
        let style_dist = WeightedIndex::new([s.plain, s.few_shot, s.instruction])
            .map_err(|e| Error::Config(format!("style_weights: {e}")))?;

        let mut world = ToyWorld {
            config: config.clone(),
            prompts: Vec::new(),
            demonstrations: Vec::new(),
            heldout_prompts: Vec::new(),
            heldout_demonstrations: Vec::new(),
            pretrain: Vec::new(),
            heldout_pretrain: Vec::new(),
            tasks: HashMap::new(),
        };
        let total_users = config.num_users + config.heldout_users;
        let mut next_id = 0usize;
        for u in 0..total_users {
            let user_id = format!("user-{u:05}");
            let heldout = u >= config.num_users;
            let source = if rng.gen_bool(config.labeler_user_fraction) {
                Source::Labeler
            } else {
                Source::Customer
            };
            let n = pareto_count(&mut rng, config);
            for _ in 0..n {
                let cat = cats[cat_dist.sample(&mut rng)].0;
                let kind = *cat
                    .kinds()
                    .choose(&mut rng)
                    .expect("every category has kinds");
                let style = Style::ALL[style_dist.sample(&mut rng)];
                let task = ToyTask::random(kind, &mut rng, config.max_items);
                let examples: Vec<ToyTask> = if style == Style::FewShot {
                    let k = rng.gen_range(1..=2);
                    (0..k)
                        .map(|_| ToyTask::random(kind, &mut rng, config.max_items.min(4)))
                        .collect()
                } else {
                    Vec::new()
                };
                let mut toy_prompt = ToyPrompt::plain(task, style);
                if config.habits.constraint_rate > 0.0
                    && rng.gen_bool(config.habits.constraint_rate)
                {
                    toy_prompt.constraint = Some(Constraint::AnswerOnly);
                    if token_count(&toy_prompt.render(&examples)) > TOY_MAX_PROMPT_TOKENS {
                        toy_prompt.constraint = None;
                    }
                }
                let prompt = toy_prompt.render(&examples);
                debug_assert!(token_count(&prompt) <= TOY_MAX_PROMPT_TOKENS, "{prompt}");
                let response = demonstration_with_habits(&toy_prompt, config, &mut rng);
                let task = toy_prompt.task.clone();
                let id = format!("prompt-{next_id:06}");
                let rec = PromptRecord {
                    id: id.clone(),
                    user_id: user_id.clone(),
                    prompt: prompt.clone(),
                    task: Some(task.label()),
                    source: Some(source),
                };
                let demo = Demonstration {
                    id: format!("demo-{next_id:06}"),
                    user_id: user_id.clone(),
                    prompt,
                    response,
                };
                next_id += 1;
                world.tasks.insert(id, toy_prompt);
                if heldout {
                    world.heldout_prompts.push(rec);
                    world.heldout_demonstrations.push(demo);
                } else {
                    world.prompts.push(rec);
                    world.demonstrations.push(demo);
                }
            }
        }
        // Interleave users, as an API log would (same permutation for prompts and demos).
        shuffle_pairs(&mut world.prompts, &mut world.demonstrations, &mut rng);
        shuffle_pairs(
            &mut world.heldout_prompts,
            &mut world.heldout_demonstrations,
            &mut rng,
        );
        for i in 0..config.pretrain_docs {
            world
                .pretrain
                .push(pretrain_doc(format!("doc-{i:06}"), config, &mut rng));
        }
        for i in 0..config.heldout_pretrain_docs {
            world.heldout_pretrain.push(pretrain_doc(
                format!("heldout-doc-{i:06}"),
                config,
                &mut rng,
            ));
        }
        Ok(world)
    }

    /// The task of a prompt the world made, by prompt id.
    pub fn task(&self, prompt_id: &str) -> Option<&ToyTask> {
        self.tasks.get(prompt_id).map(|p| &p.task)
    }

    /// The style of a prompt the world made, by prompt id.
    pub fn style(&self, prompt_id: &str) -> Option<Style> {
        self.tasks.get(prompt_id).map(|p| p.style)
    }

    /// Task, style and constraint of a prompt the world made, by prompt id.
    pub fn prompt(&self, prompt_id: &str) -> Option<&ToyPrompt> {
        self.tasks.get(prompt_id)
    }

    /// Every text the world contains (prompts, demonstrations, pretraining documents).
    pub fn texts(&self) -> impl Iterator<Item = &str> + '_ {
        self.prompts
            .iter()
            .chain(&self.heldout_prompts)
            .map(|p| p.prompt.as_str())
            .chain(
                self.demonstrations
                    .iter()
                    .chain(&self.heldout_demonstrations)
                    .map(|d| d.response.as_str()),
            )
            .chain(
                self.pretrain
                    .iter()
                    .chain(&self.heldout_pretrain)
                    .map(|d| d.text.as_str()),
            )
    }

    /// Writes the world to `dir` (created if needed): `prompts.jsonl`, `demonstrations.jsonl`,
    /// `heldout_prompts.jsonl`, `heldout_demonstrations.jsonl`, `pretrain.jsonl`,
    /// `heldout_pretrain.jsonl` and `tokenizer.json`. Each file is written atomically.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        write_jsonl(dir.join("prompts.jsonl"), &self.prompts)?;
        write_jsonl(dir.join("demonstrations.jsonl"), &self.demonstrations)?;
        write_jsonl(dir.join("heldout_prompts.jsonl"), &self.heldout_prompts)?;
        write_jsonl(
            dir.join("heldout_demonstrations.jsonl"),
            &self.heldout_demonstrations,
        )?;
        write_jsonl(dir.join("pretrain.jsonl"), &self.pretrain)?;
        write_jsonl(dir.join("heldout_pretrain.jsonl"), &self.heldout_pretrain)?;
        save_toy_tokenizer(dir.join("tokenizer.json"))
    }
}

fn shuffle_pairs<A, B, R: Rng + ?Sized>(a: &mut Vec<A>, b: &mut Vec<B>, rng: &mut R) {
    let mut idx: Vec<usize> = (0..a.len()).collect();
    idx.shuffle(rng);
    let mut a_opt: Vec<Option<A>> = a.drain(..).map(Some).collect();
    let mut b_opt: Vec<Option<B>> = b.drain(..).map(Some).collect();
    for i in idx {
        a.push(a_opt[i].take().expect("each index once"));
        b.push(b_opt[i].take().expect("each index once"));
    }
}

/// A solved task of the pretraining corpus: a plain-style query and its answer, `query answer ;`.
///
/// With [`ToyConfig::pretrain_habits`] it is written like a demonstration (the same writers,
/// habits and error rate, [`demonstration_with_habits`]), and a share `habits.constraint_rate`
/// of the queries carry the `answer only :` prefix: the internet the base model learns from is
/// written by the same kind of people as the demonstrations. Otherwise the answer is plain.
fn pretrain_task_segment<R: Rng + ?Sized>(cfg: &ToyConfig, rng: &mut R) -> String {
    let kind = *TaskKind::ALL.choose(rng).expect("non-empty");
    let task = ToyTask::random(kind, rng, cfg.max_items);
    if !cfg.pretrain_habits || cfg.habits.is_none() {
        let answer = demonstration_text(&task, cfg.demo_error_rate, rng);
        return format!("{} {} ;", task.plain_prompt(), answer);
    }
    let mut prompt = ToyPrompt::plain(task, Style::Plain);
    if cfg.habits.constraint_rate > 0.0 && rng.gen_bool(cfg.habits.constraint_rate) {
        prompt.constraint = Some(Constraint::AnswerOnly);
    }
    let answer = demonstration_with_habits(&prompt, cfg, rng);
    format!("{} {} ;", prompt.render(&[]), answer)
}

fn pretrain_segment<R: Rng + ?Sized>(cfg: &ToyConfig, rng: &mut R) -> String {
    if rng.gen_bool(cfg.pretrain_task_fraction) {
        return pretrain_task_segment(cfg, rng);
    }
    match rng.gen_range(0..10) {
        0..=5 => random_sentence(rng, None),
        6 | 7 => {
            let kind = *WordKind::ALL.choose(rng).expect("non-empty");
            let word = kind.words().choose(rng).expect("non-empty");
            format!("{word} is {} {} .", kind.article(), kind.singular())
        }
        8 => {
            let kind = *WordKind::ALL.choose(rng).expect("non-empty");
            let n = rng.gen_range(2..=5);
            let words: Vec<&str> = kind.words().choose_multiple(rng, n).copied().collect();
            format!("{} : {} .", kind.plural(), words.join(" "))
        }
        _ => {
            let pool = if rng.gen_bool(0.6) {
                &LETTERS[..]
            } else {
                &DIGITS[..]
            };
            let n = rng.gen_range(3..=6).min(pool.len());
            let start = rng.gen_range(0..=pool.len() - n);
            debug_assert!(Pool::of_item(pool[start]).is_some());
            pool[start..start + n].join(" ")
        }
    }
}

fn pretrain_doc<R: Rng + ?Sized>(id: String, cfg: &ToyConfig, rng: &mut R) -> PretrainText {
    let n = rng.gen_range(1..=4);
    let text = (0..n)
        .map(|_| pretrain_segment(cfg, rng))
        .collect::<Vec<_>>()
        .join(" ");
    PretrainText {
        id,
        user_id: format!("site-{:02}", rng.gen_range(0..20)),
        text,
    }
}

/// Simulates the reward-model data collection without a model: for each prompt, samples
/// K (uniform in `min_k..=max_k`) distinct candidates from [`sample_candidates`] and has a
/// random labeler of `pool` rank them. Ranking ids are `ranking-<prompt id>`.
///
/// Prompts must be toy-world prompts (their task is parsed from the text).
pub fn simulate_rankings(
    prompts: &[PromptRecord],
    pool: &LabelerPool,
    min_k: usize,
    max_k: usize,
    seed: u64,
) -> Result<Vec<Ranking>> {
    if min_k < 2 || max_k < min_k {
        return Err(Error::Config(format!(
            "K range {min_k}..={max_k}: expected 2 <= min_k <= max_k"
        )));
    }
    if pool.is_empty() {
        return Err(Error::Config(
            "labeler pool is empty: expected at least one labeler".into(),
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    prompts
        .iter()
        .map(|p| {
            let prompt = ToyPrompt::parse(&p.prompt)?;
            let k = rng.gen_range(min_k..=max_k);
            let responses = sample_candidates(&prompt.task, k, &mut rng);
            let ranking = pool.choose(&mut rng).rank(&prompt, &responses, &mut rng);
            Ok(Ranking {
                id: format!("ranking-{}", p.id),
                user_id: p.user_id.clone(),
                prompt: p.prompt.clone(),
                responses,
                ranking,
            })
        })
        .collect()
}
