//! Chat templates: rendering prompts the way an instruction-tuned model was trained to read them.
//!
//! Hugging Face checkpoints of chat models carry a Jinja template (`chat_template` in
//! `tokenizer_config.json`, or a `chat_template.jinja` file) that turns a list of messages into
//! the model's prompt text, for SmolLM2 for example
//!
//! ```text
//! <|im_start|>system
//! You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
//! <|im_start|>user
//! What is 2+2?<|im_end|>
//! <|im_start|>assistant
//! ```
//!
//! [`ChatTemplate`] renders such templates with [minijinja](https://docs.rs/minijinja) the way
//! `transformers`' `apply_chat_template` does: the variables `messages`, `add_generation_prompt`,
//! `bos_token` and `eos_token`, the function `raise_exception`, and Python's string and dict
//! methods (`.strip()`, `.startswith()`, `.items()`, ...) through `minijinja-contrib`'s pycompat.
//! The rendered text holds the special tokens as text (`<|im_start|>`); the tokenizer maps them
//! to their ids because they are added tokens, so it is encoded without adding special tokens, as
//! `apply_chat_template(..., tokenize=True)` does.
//!
//! The stages render a record's prompt as one user message followed by the generation prompt
//! ([`ChatTemplate::render_prompt`]); the response is what the model writes after it.

use crate::error::{Error, Result};
use minijinja::{context, Environment, ErrorKind};
use serde::Serialize;
use std::sync::Arc;

const NAME: &str = "chat_template";

/// The variables [`ChatTemplate::render`] sets itself.
const RESERVED: [&str; 4] = [
    "messages",
    "add_generation_prompt",
    "bos_token",
    "eos_token",
];

/// Parses `KEY=VALUE` arguments of a chat template (the stages' `--chat-template-kwarg`): the
/// value is JSON when it parses as JSON (`false`, `3`, `"x"`, `[1]`), else a string
/// (`name=Ada`). A missing `=`, an empty key or a name the renderer sets is an error naming
/// the argument.
pub fn parse_kwargs(args: &[String]) -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut out = serde_json::Map::new();
    for arg in args {
        let (key, value) = arg.split_once('=').ok_or_else(|| {
            Error::Config(format!(
                "chat template argument {arg:?}: expected KEY=VALUE (e.g. enable_thinking=false)"
            ))
        })?;
        let key = key.trim();
        if key.is_empty() || RESERVED.contains(&key) {
            return Err(Error::Config(format!(
                "chat template argument {arg:?}: {}",
                if key.is_empty() {
                    "the key is empty".to_string()
                } else {
                    format!("{key:?} is set by the renderer")
                }
            )));
        }
        let value = serde_json::from_str(value.trim())
            .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
        out.insert(key.to_string(), value);
    }
    Ok(out)
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant` (templates may know others).
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message from `role`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
}

/// A compiled chat template with the special tokens it may refer to. Cheap to clone.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Arc<Environment<'static>>,
    source: Arc<str>,
    bos_token: String,
    eos_token: String,
    /// Extra variables ([`ChatTemplate::with_kwargs`]).
    kwargs: Arc<serde_json::Map<String, serde_json::Value>>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bytes", &self.source.len())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `source`; `bos_token` and `eos_token` are the texts the template's variables of
    /// those names hold (empty when the tokenizer has none). A syntax error is reported with its
    /// line.
    pub fn new(
        source: impl Into<String>,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
    ) -> Result<Self> {
        let source: String = source.into();
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        // Templates strip the template's own newlines the way transformers configures Jinja.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function("raise_exception", |msg: String| -> Result<String, _> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |format: String| strftime_now(&format));
        env.add_template_owned(NAME, source.clone())
            .map_err(|e| Error::Config(format!("chat template: {}", describe(&e))))?;
        Ok(ChatTemplate {
            env: Arc::new(env),
            source: source.into(),
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
            kwargs: Default::default(),
        })
    }

    /// The template with extra variables, as `transformers`' `apply_chat_template(...,
    /// **kwargs)` (TRL's `chat_template_kwargs`) passes them: `{"enable_thinking": false}` turns
    /// Qwen3's and SmolLM3's reasoning off. The names the renderer sets itself (`messages`,
    /// `add_generation_prompt`, `bos_token`, `eos_token`) are refused.
    pub fn with_kwargs(
        mut self,
        kwargs: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self> {
        if let Some(k) = kwargs.keys().find(|k| RESERVED.contains(&k.as_str())) {
            return Err(Error::Config(format!(
                "chat template argument {k:?}: the renderer sets it; choose another name"
            )));
        }
        self.kwargs = Arc::new(kwargs);
        Ok(self)
    }

    /// The extra variables the template is rendered with.
    pub fn kwargs(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.kwargs
    }

    /// Reads the template from a Hugging Face `tokenizer_config.json` value: `chat_template` as
    /// a string, or as a list of `{"name", "template"}` (the one named `default`), with
    /// `bos_token` / `eos_token` as strings or `{"content": ...}` objects. `None` when it has
    /// no template.
    pub fn from_tokenizer_config(config: &serde_json::Value) -> Result<Option<Self>> {
        let source = match config.get("chat_template") {
            None | Some(serde_json::Value::Null) => return Ok(None),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Array(list)) => {
                let named = |want: &str| {
                    list.iter().find_map(|t| {
                        (t.get("name")?.as_str()? == want)
                            .then(|| t.get("template")?.as_str().map(str::to_string))
                            .flatten()
                    })
                };
                named("default").ok_or_else(|| {
                    Error::Config(
                        "chat_template is a list of named templates without one named \
                         \"default\""
                            .into(),
                    )
                })?
            }
            Some(other) => {
                return Err(Error::Config(format!(
                    "chat_template: expected a string or a list of {{\"name\", \"template\"}}, \
                     found {other}"
                )))
            }
        };
        let token = |key: &str| -> String {
            match config.get(key) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Object(o)) => o
                    .get("content")
                    .and_then(|c| c.as_str())
                    .unwrap_or_default()
                    .to_string(),
                _ => String::new(),
            }
        };
        Self::new(source, token("bos_token"), token("eos_token")).map(Some)
    }

    /// The template's source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders a conversation; `add_generation_prompt` appends what opens the assistant's turn.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self.env.get_template(NAME).expect("added in new()");
        tmpl.render(context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
            ..minijinja::Value::from_serialize(&*self.kwargs)
        })
        .map_err(|e| Error::Config(format!("chat template: {}", describe(&e))))
    }

    /// A prompt as the model reads it: one user message, then the generation prompt.
    pub fn render_prompt(&self, user: &str) -> Result<String> {
        self.render(&[ChatMessage::user(user)], true)
    }

    /// What the template writes right after an assistant message's text: its end of turn
    /// (`<|im_end|>\n` in ChatML, Llama 3's `<|eot_id|>`, Gemma's `<end_of_turn>\n`). Found by
    /// rendering a user message and an assistant reply and reading what follows the reply;
    /// `None` when the template renders no assistant message or writes nothing after it.
    pub fn turn_end(&self) -> Option<String> {
        const REPLY: &str = "rlhfTurnEndProbe";
        let text = self
            .render(
                &[
                    ChatMessage::user("Hello"),
                    ChatMessage::new("assistant", REPLY),
                ],
                false,
            )
            .ok()?;
        let at = text.rfind(REPLY)? + REPLY.len();
        Some(text[at..].to_string()).filter(|rest| !rest.is_empty())
    }
}

/// `strftime_now(format)`, the function `transformers` gives chat templates: Llama 3.1 / 3.2
/// Instruct and SmolLM3 write today's date into their system prompt with it (Llama's falls back
/// to "26 Jul 2024" where it is not defined). The current time in UTC (`transformers` takes the
/// machine's local time), formatted with [`strftime`].
pub fn strftime_now(format: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    strftime(format, secs)
}

/// `secs` since 1970-01-01 00:00 UTC formatted with C's `strftime` codes `%d %e %m %y %Y %b %B
/// %a %A %H %M %S %j %%` (English names, as Python's in the C locale); any other `%` code is
/// written as it is.
pub fn strftime(format: &str, secs: i64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let before: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = before[(month - 1) as usize] + day + i64::from(leap && month > 2);
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let weekday = (days + 3).rem_euclid(7) as usize;
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('e') => out.push_str(&format!("{day:2}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('y') => out.push_str(&format!("{:02}", year.rem_euclid(100))),
            Some('Y') => out.push_str(&year.to_string()),
            Some('b') => out.push_str(&MONTHS[(month - 1) as usize][..3]),
            Some('B') => out.push_str(MONTHS[(month - 1) as usize]),
            Some('a') => out.push_str(&DAYS[weekday][..3]),
            Some('A') => out.push_str(DAYS[weekday]),
            Some('H') => out.push_str(&format!("{:02}", rem / 3600)),
            Some('M') => out.push_str(&format!("{:02}", rem / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", rem % 60)),
            Some('j') => out.push_str(&format!("{yday:03}")),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// The proleptic Gregorian (year, month, day) of a day count from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// minijinja's message with the line it points at.
fn describe(e: &minijinja::Error) -> String {
    match e.line() {
        Some(line) => format!("{e} (template line {line})"),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M-Instruct's template (from its GGUF metadata).
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_smollm2_as_transformers_does() {
        let t = ChatTemplate::new(SMOLLM2, "<|im_start|>", "<|im_end|>").unwrap();
        assert_eq!(
            t.render_prompt("What is 2+2?").unwrap(),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
             Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
        );
        let no_gen = t.render(&[ChatMessage::user("hi")], false).unwrap();
        assert!(
            no_gen.ends_with("<|im_start|>user\nhi<|im_end|>\n"),
            "{no_gen}"
        );
    }

    /// Gemma 3's template (google/gemma-3-1b-it's `tokenizer_config.json`: `is string`,
    /// `| trim`, `messages[1:]`, the system message folded into the first user turn,
    /// `raise_exception` for roles out of order) rendered as `transformers` 5.23's
    /// `apply_chat_template` renders it (`tests/fixtures/render_gemma3_template.py`).
    #[test]
    fn renders_gemma3_as_transformers_does() {
        let fixture: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/gemma3_chat.json")).unwrap();
        let s = |v: &serde_json::Value| v.as_str().unwrap().to_string();
        let t = ChatTemplate::new(
            s(&fixture["template"]),
            s(&fixture["bos_token"]),
            s(&fixture["eos_token"]),
        )
        .unwrap();
        let cases = fixture["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 3);
        for case in cases {
            let messages: Vec<ChatMessage> = case["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| ChatMessage::new(s(&m["role"]), s(&m["content"])))
                .collect();
            let gen = case["add_generation_prompt"].as_bool().unwrap();
            assert_eq!(t.render(&messages, gen).unwrap(), s(&case["text"]));
        }
        let err = t
            .render(&[ChatMessage::new("assistant", "x")], true)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&s(&fixture["roles_error"])), "{err}");
        assert_eq!(t.turn_end().as_deref(), Some("<end_of_turn>\n"));
    }

    /// Python's `datetime.fromtimestamp(secs, UTC).strftime(...)` for the same seconds.
    #[test]
    fn strftime_formats_as_python_does() {
        let f = "%d %b %Y|%B %A %a %m %y %H:%M:%S %j|%e|%%|%Q";
        for (secs, want) in [
            (
                0,
                "01 Jan 1970|January Thursday Thu 01 70 00:00:00 001| 1|%|%Q",
            ),
            (
                1_796_565_600,
                "06 Dec 2026|December Sunday Sun 12 26 14:00:00 340| 6|%|%Q",
            ),
            (
                951_782_400,
                "29 Feb 2000|February Tuesday Tue 02 00 00:00:00 060|29|%|%Q",
            ),
            (
                1_709_164_800,
                "29 Feb 2024|February Thursday Thu 02 24 00:00:00 060|29|%|%Q",
            ),
        ] {
            assert_eq!(strftime(f, secs), want, "{secs}");
        }
    }

    /// Llama 3.2 Instruct's system header takes today's date from `strftime_now`, as
    /// `transformers` renders it, not the template's fallback.
    #[test]
    fn templates_get_todays_date() {
        let src = "{%- if strftime_now is defined %}{%- set date_string = \
                   strftime_now(\"%d %b %Y\") %}{%- else %}{%- set date_string = \
                   \"26 Jul 2024\" %}{%- endif %}Today Date: {{ date_string }}";
        let t = ChatTemplate::new(src, "", "").unwrap();
        let before = strftime_now("%d %b %Y");
        let text = t.render_prompt("x").unwrap();
        let after = strftime_now("%d %b %Y");
        // Either side of a midnight between the calls.
        assert!(
            text == format!("Today Date: {before}") || text == format!("Today Date: {after}"),
            "{text}"
        );
        assert!(
            !text.contains("26 Jul 2024") || before == "26 Jul 2024",
            "{text}"
        );
    }

    /// Qwen3's switch, as its template reads it: without the argument thinking stays on, with
    /// `enable_thinking=false` the generation prompt holds an empty think block.
    #[test]
    fn kwargs_reach_the_template() {
        let src = "{{ messages[0].content }}|{%- if add_generation_prompt %}\
                   {{ '<|im_start|>assistant\\n' }}\
                   {%- if enable_thinking is defined and enable_thinking is false %}\
                   {{ '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}\
                   {{ name | default('-') }}";
        let t = ChatTemplate::new(src, "", "").unwrap();
        assert_eq!(
            t.render_prompt("hi").unwrap(),
            "hi|<|im_start|>assistant\n-"
        );
        let args = [
            "enable_thinking=false".to_string(),
            "name = Ada".to_string(),
        ];
        let kw = parse_kwargs(&args).unwrap();
        assert_eq!(kw["enable_thinking"], serde_json::json!(false));
        assert_eq!(kw["name"], serde_json::json!(" Ada"));
        let t = t.with_kwargs(kw).unwrap();
        assert_eq!(
            t.render_prompt("hi").unwrap(),
            "hi|<|im_start|>assistant\n<think>\n\n</think>\n\n Ada"
        );
        for (bad, want) in [
            ("enable_thinking", "KEY=VALUE"),
            ("=1", "empty"),
            ("messages=[]", "set by the renderer"),
        ] {
            let err = parse_kwargs(&[bad.to_string()]).unwrap_err().to_string();
            assert!(err.contains(want) && err.contains(bad), "{err}");
        }
        let mut reserved = serde_json::Map::new();
        reserved.insert("bos_token".into(), serde_json::json!("x"));
        let err = ChatTemplate::new("x", "", "")
            .unwrap()
            .with_kwargs(reserved)
            .unwrap_err();
        assert!(err.to_string().contains("bos_token"), "{err}");
    }

    #[test]
    fn turn_end_is_what_follows_an_assistant_reply() {
        let t = ChatTemplate::new(SMOLLM2, "<|im_start|>", "<|im_end|>").unwrap();
        assert_eq!(t.turn_end().as_deref(), Some("<|im_end|>\n"));
        // A template that writes nothing after the reply, or renders no reply, has none.
        let bare = ChatTemplate::new("{% for m in messages %}{{ m.content }}{% endfor %}", "", "")
            .unwrap();
        assert_eq!(bare.turn_end(), None);
        let users_only = ChatTemplate::new(
            "{% for m in messages %}{% if m.role == 'user' %}{{ m.content }}\n{% endif %}{% endfor %}",
            "",
            "",
        )
        .unwrap();
        assert_eq!(users_only.turn_end(), None);
    }

    #[test]
    fn python_methods_bos_and_raise_exception() {
        let src = "{{ bos_token }}{% for m in messages %}{% if m.role not in ['user'] %}\
                   {{ raise_exception('only user messages: ' + m.role) }}{% endif %}\
                   [{{ m.content.strip().upper() }}]{% endfor %}{{ eos_token }}";
        let t = ChatTemplate::new(src, "<s>", "</s>").unwrap();
        assert_eq!(t.render_prompt("  hi ").unwrap(), "<s>[HI]</s>");
        let err = t
            .render(&[ChatMessage::new("system", "x")], true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("only user messages: system"), "{err}");
    }

    #[test]
    fn reads_tokenizer_config_forms() {
        let cfg = serde_json::json!({
            "chat_template": [{"name": "tool_use", "template": "T"},
                              {"name": "default", "template": "{{ bos_token }}D"}],
            "bos_token": {"content": "<s>", "lstrip": false},
        });
        let t = ChatTemplate::from_tokenizer_config(&cfg).unwrap().unwrap();
        assert_eq!(t.render_prompt("x").unwrap(), "<s>D");
        let none = serde_json::json!({"bos_token": "<s>"});
        assert!(ChatTemplate::from_tokenizer_config(&none)
            .unwrap()
            .is_none());
        let bad = serde_json::json!({"chat_template": 3});
        assert!(ChatTemplate::from_tokenizer_config(&bad).is_err());
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = ChatTemplate::new("ok\n{% for m in messages %}\n{{ m.content ", "", "")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("chat template") && err.contains("line"),
            "{err}"
        );
    }
}
