//! Yes/no questions (borg's `yes()`): answers from an environment variable or stdin, prompts
//! and outcomes as text on stderr or as `question_*` objects with `--log-json`.

use std::io::BufRead;

use serde_json::{Map, Value};

use super::{dumps_line, is_log_json, write_stderr};

pub const FALSISH: &[&str] = &["No", "NO", "no", "N", "n", "0"];
pub const TRUISH: &[&str] = &["Yes", "YES", "yes", "Y", "y", "1"];
pub const DEFAULTISH: &[&str] = &["Default", "DEFAULT", "default", "D", "d", ""];
/// Only `YES` counts as yes (check --repair, delete of a repository).
pub const ONLY_YES: &[&str] = &["YES"];

/// A question and how to treat its answers (the parameters of borg's `yes()`).
#[derive(Debug, Clone)]
pub struct Question<'a> {
    /// The prompt (no newline is added).
    pub msg: Option<&'a str>,
    pub false_msg: Option<&'a str>,
    pub true_msg: Option<&'a str>,
    pub default_msg: Option<&'a str>,
    /// Prompt shown before a retry.
    pub retry_msg: Option<&'a str>,
    /// Shown after an answer that is neither true, false nor default.
    pub invalid_msg: Option<&'a str>,
    /// Echo of an answer taken from the environment; `{}` = answer, then variable name.
    pub env_msg: Option<&'a str>,
    pub falsish: &'a [&'a str],
    pub truish: &'a [&'a str],
    pub defaultish: &'a [&'a str],
    /// Returned for defaultish answers, EOF, and invalid answers without retry.
    pub default: bool,
    /// Ask again after an invalid answer.
    pub retry: bool,
    /// Environment variable that answers the question (also the msgid by default).
    pub env_var_override: Option<&'a str>,
    /// False: never read stdin (no env answer → default).
    pub prompt: bool,
    pub msgid: Option<&'a str>,
}

impl Default for Question<'_> {
    fn default() -> Self {
        Question {
            msg: None,
            false_msg: None,
            true_msg: None,
            default_msg: None,
            retry_msg: None,
            invalid_msg: None,
            env_msg: Some("{} (from {})"),
            falsish: FALSISH,
            truish: TRUISH,
            defaultish: DEFAULTISH,
            default: false,
            retry: true,
            env_var_override: None,
            prompt: true,
            msgid: None,
        }
    }
}

/// Ask `q`, reading answers from stdin (one line each; EOF counts as the default).
pub fn yes(q: &Question) -> bool {
    let mut read = || {
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) => Answer::Eof,
            Ok(_) => {
                let line = line.strip_suffix('\n').unwrap_or(&line);
                Answer::Line(line.strip_suffix('\r').unwrap_or(line).to_string())
            }
            Err(_) => Answer::Undecodable,
        }
    };
    yes_with_input(q, &mut read, &|name| std::env::var(name).ok())
}

/// What one read from the user produced.
pub enum Answer {
    Line(String),
    Eof,
    /// Input that is not valid text (counts as an invalid answer).
    Undecodable,
}

/// [`yes`] with the input and environment lookups supplied (for tests and remote use).
pub fn yes_with_input(
    q: &Question,
    read: &mut dyn FnMut() -> Answer,
    env: &dyn Fn(&str) -> Option<String>,
) -> bool {
    let msgid = q.msgid.or(q.env_var_override);
    let show = |msg: &str, kind: &str, is_prompt: bool, env_var: Option<&str>| {
        emit(msg, kind, is_prompt, env_var, msgid);
    };
    if let Some(msg) = q.msg {
        show(msg, "prompt", true, None);
    }
    let mut env_var = q.env_var_override;
    loop {
        let mut answer: Option<String> = None;
        if let Some(var) = env_var {
            answer = env(var);
            if let (Some(a), Some(template)) = (&answer, q.env_msg) {
                let text = template.replacen("{}", a, 1).replacen("{}", var, 1);
                show(&text, "env_answer", false, Some(var));
            }
        }
        let answer = match answer {
            Some(a) => Some(a),
            None => {
                if !q.prompt {
                    return q.default;
                }
                match read() {
                    Answer::Line(l) => Some(l),
                    // EOF: answer as if the default had been typed.
                    Answer::Eof => Some(
                        if q.default {
                            q.truish.first()
                        } else {
                            q.falsish.first()
                        }
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                    ),
                    Answer::Undecodable => None,
                }
            }
        };
        if let Some(a) = answer.as_deref() {
            if q.defaultish.contains(&a) {
                if let Some(m) = q.default_msg {
                    show(m, "accepted_default", false, None);
                }
                return q.default;
            }
            if q.truish.contains(&a) {
                if let Some(m) = q.true_msg {
                    show(m, "accepted_true", false, None);
                }
                return true;
            }
            if q.falsish.contains(&a) {
                if let Some(m) = q.false_msg {
                    show(m, "accepted_false", false, None);
                }
                return false;
            }
        }
        if let Some(m) = q.invalid_msg {
            show(m, "invalid_answer", false, None);
        }
        if !q.retry {
            return q.default;
        }
        if let Some(m) = q.retry_msg {
            show(m, "prompt_retry", true, None);
        }
        // An invalid answer from the environment is not used again.
        env_var = None;
    }
}

fn emit(msg: &str, kind: &str, is_prompt: bool, env_var: Option<&str>, msgid: Option<&str>) {
    if is_log_json() {
        let mut obj = Map::new();
        if let Some(v) = env_var {
            obj.insert("env_var".into(), Value::from(v));
        }
        obj.insert("type".into(), Value::from(format!("question_{kind}")));
        obj.insert(
            "msgid".into(),
            msgid.map(Value::from).unwrap_or(Value::Null),
        );
        obj.insert("message".into(), Value::from(msg));
        write_stderr(&(dumps_line(&Value::Object(obj)) + "\n"));
    } else if is_prompt {
        write_stderr(msg);
    } else {
        write_stderr(&format!("{msg}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(q: &Question, lines: &[&str], env: Option<&str>) -> bool {
        let _l = crate::output::capture::lock();
        crate::output::capture::start();
        let mut it = lines
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .into_iter();
        let mut read = move || it.next().map(Answer::Line).unwrap_or(Answer::Eof);
        let env_val = env.map(|s| s.to_string());
        let answer = yes_with_input(q, &mut read, &move |_| env_val.clone());
        crate::output::capture::take();
        answer
    }

    fn check_question() -> Question<'static> {
        Question {
            msg: Some("Type 'YES' if you understand this and want to continue: "),
            false_msg: Some("Aborting."),
            invalid_msg: Some("Invalid answer, aborting."),
            truish: ONLY_YES,
            retry: false,
            env_var_override: Some("BORG_CHECK_I_KNOW_WHAT_I_AM_DOING"),
            ..Default::default()
        }
    }

    #[test]
    fn answers() {
        let q = check_question();
        assert!(ask(&q, &["YES"], None));
        assert!(!ask(&q, &["yes"], None)); // invalid for this question → default
        assert!(!ask(&q, &[], None)); // EOF
        assert!(!ask(&q, &["NO"], None));
        assert!(ask(&q, &[], Some("YES")));
        assert!(!ask(&q, &["YES"], Some("NO")));
    }

    #[test]
    fn retry_ignores_bad_env_answer() {
        let q = Question {
            msg: Some("Do you want your passphrase to be displayed for verification? [yN]: "),
            retry_msg: Some("Do you want your passphrase to be displayed for verification? [yN]: "),
            invalid_msg: Some("Invalid answer, try again."),
            env_var_override: Some("BORG_DISPLAY_PASSPHRASE"),
            ..Default::default()
        };
        assert!(ask(&q, &["maybe", "y"], Some("bogus")));
        assert!(!ask(&q, &[""], None)); // defaultish
    }
}
