//! The [`Record`] impls of the record types: field readers and validation.

use super::*;

impl Record for PromptRecord {
    const KIND: &'static str = "prompt";

    fn id(&self) -> &str {
        &self.id
    }

    fn from_json_object(mut obj: Map<String, Value>) -> Result<Self, FieldProblem> {
        let id = take_text(&mut obj, "id")?;
        let user_id = take_text(&mut obj, "user_id")?;
        let prompt = take_text(&mut obj, "prompt")?;
        let task = take_opt_text(&mut obj, "task")?;
        let source = take_source(&mut obj)?;
        Ok(PromptRecord {
            id,
            user_id,
            prompt,
            task,
            source,
        })
    }

    fn validate(&self) -> Result<(), FieldProblem> {
        check_text("id", &self.id)?;
        check_text("user_id", &self.user_id)?;
        check_text("prompt", &self.prompt)?;
        if let Some(task) = &self.task {
            check_text("task", task)?;
        }
        Ok(())
    }
}

impl Record for Demonstration {
    const KIND: &'static str = "demonstration";

    fn id(&self) -> &str {
        &self.id
    }

    fn from_json_object(mut obj: Map<String, Value>) -> Result<Self, FieldProblem> {
        let id = take_text(&mut obj, "id")?;
        let user_id = take_text(&mut obj, "user_id")?;
        let prompt = take_text(&mut obj, "prompt")?;
        let response = take_text(&mut obj, "response")?;
        Ok(Demonstration {
            id,
            user_id,
            prompt,
            response,
        })
    }

    fn validate(&self) -> Result<(), FieldProblem> {
        check_text("id", &self.id)?;
        check_text("user_id", &self.user_id)?;
        check_text("prompt", &self.prompt)?;
        check_text("response", &self.response)
    }
}

impl Record for PretrainText {
    const KIND: &'static str = "pretrain";

    fn id(&self) -> &str {
        &self.id
    }

    fn from_json_object(mut obj: Map<String, Value>) -> Result<Self, FieldProblem> {
        let id = take_text(&mut obj, "id")?;
        let user_id = take_text(&mut obj, "user_id")?;
        let text = take_text(&mut obj, "text")?;
        Ok(PretrainText { id, user_id, text })
    }

    fn validate(&self) -> Result<(), FieldProblem> {
        check_text("id", &self.id)?;
        check_text("user_id", &self.user_id)?;
        check_text("text", &self.text)
    }
}

const RESPONSES_EXPECTED: &str =
    "an array of K >= 2 strings (or the pairwise form `chosen` + `rejected`)";
const RANKING_EXPECTED: &str = "an array of K indices into `responses`, best first";
const RESPONSE_EXPECTED: &str = "a string";

fn ranking_semantics(responses: &[String], ranking: &[usize]) -> Result<(), FieldProblem> {
    let k = responses.len();
    if k < 2 {
        return Err(FieldProblem::field(
            "responses",
            Problem::TooFewResponses { k },
        ));
    }
    if ranking.len() != k {
        return Err(FieldProblem::field(
            "ranking",
            Problem::RankingLength {
                k,
                found: ranking.len(),
            },
        ));
    }
    let mut seen = vec![false; k];
    for (pos, &idx) in ranking.iter().enumerate() {
        if idx >= k {
            return Err(FieldProblem::field(
                format!("ranking[{pos}]"),
                Problem::IndexOutOfRange {
                    k,
                    found: idx.to_string(),
                },
            ));
        }
        if seen[idx] {
            return Err(FieldProblem::field(
                "ranking",
                Problem::RepeatedIndex { k, index: idx },
            ));
        }
        seen[idx] = true;
    }
    let mut first_seen: HashMap<&str, usize> = HashMap::with_capacity(k);
    for (i, r) in responses.iter().enumerate() {
        if let Some(&first) = first_seen.get(r.as_str()) {
            return Err(FieldProblem::field(
                format!("responses[{i}]"),
                Problem::DuplicateResponse { k, first },
            ));
        }
        first_seen.insert(r.as_str(), i);
    }
    Ok(())
}

impl Record for Ranking {
    const KIND: &'static str = "ranking";

    fn id(&self) -> &str {
        &self.id
    }

    fn from_json_object(mut obj: Map<String, Value>) -> Result<Self, FieldProblem> {
        let id = take_text(&mut obj, "id")?;
        let user_id = take_text(&mut obj, "user_id")?;
        let prompt = take_text(&mut obj, "prompt")?;
        let kwise = obj.contains_key("responses") || obj.contains_key("ranking");
        let pairwise = obj.contains_key("chosen") || obj.contains_key("rejected");
        if kwise && pairwise {
            return Err(FieldProblem::line(Problem::AmbiguousRankingForm));
        }
        let (responses, ranking) = if pairwise {
            let chosen = take_any_string(&mut obj, "chosen", RESPONSE_EXPECTED)?;
            let rejected = take_any_string(&mut obj, "rejected", RESPONSE_EXPECTED)?;
            if rejected == chosen {
                return Err(FieldProblem::field(
                    "rejected",
                    Problem::RejectedEqualsChosen,
                ));
            }
            (vec![chosen, rejected], vec![0, 1])
        } else {
            let responses = match obj.remove("responses") {
                None => {
                    return Err(FieldProblem::field(
                        "responses",
                        Problem::MissingField {
                            expected: RESPONSES_EXPECTED,
                        },
                    ))
                }
                Some(Value::Array(items)) => {
                    let mut out = Vec::with_capacity(items.len());
                    for (i, item) in items.into_iter().enumerate() {
                        match item {
                            Value::String(s) => out.push(s),
                            other => {
                                return Err(FieldProblem::field(
                                    format!("responses[{i}]"),
                                    Problem::WrongType {
                                        expected: RESPONSE_EXPECTED,
                                        found: describe_value(&other),
                                    },
                                ))
                            }
                        }
                    }
                    out
                }
                Some(other) => {
                    return Err(FieldProblem::field(
                        "responses",
                        Problem::WrongType {
                            expected: RESPONSES_EXPECTED,
                            found: describe_value(&other),
                        },
                    ))
                }
            };
            let k = responses.len();
            if k < 2 {
                return Err(FieldProblem::field(
                    "responses",
                    Problem::TooFewResponses { k },
                ));
            }
            let ranking = match obj.remove("ranking") {
                None => {
                    return Err(FieldProblem::field(
                        "ranking",
                        Problem::MissingField {
                            expected: RANKING_EXPECTED,
                        },
                    ))
                }
                Some(Value::Array(items)) => {
                    if items.len() != k {
                        return Err(FieldProblem::field(
                            "ranking",
                            Problem::RankingLength {
                                k,
                                found: items.len(),
                            },
                        ));
                    }
                    let mut out = Vec::with_capacity(k);
                    for (pos, item) in items.iter().enumerate() {
                        let field = || format!("ranking[{pos}]");
                        match item {
                            Value::Number(n) => match n.as_u64() {
                                Some(v) if (v as u128) < k as u128 => out.push(v as usize),
                                _ => {
                                    return Err(FieldProblem::field(
                                        field(),
                                        Problem::IndexOutOfRange {
                                            k,
                                            found: n.to_string(),
                                        },
                                    ))
                                }
                            },
                            other => {
                                return Err(FieldProblem::field(
                                    field(),
                                    Problem::WrongType {
                                        expected: "an integer index",
                                        found: describe_value(other),
                                    },
                                ))
                            }
                        }
                    }
                    out
                }
                Some(other) => {
                    return Err(FieldProblem::field(
                        "ranking",
                        Problem::WrongType {
                            expected: RANKING_EXPECTED,
                            found: describe_value(&other),
                        },
                    ))
                }
            };
            (responses, ranking)
        };
        ranking_semantics(&responses, &ranking)?;
        Ok(Ranking {
            id,
            user_id,
            prompt,
            responses,
            ranking,
        })
    }

    fn validate(&self) -> Result<(), FieldProblem> {
        check_text("id", &self.id)?;
        check_text("user_id", &self.user_id)?;
        check_text("prompt", &self.prompt)?;
        ranking_semantics(&self.responses, &self.ranking)
    }
}

macro_rules! deserialize_via_record {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            /// Deserializes through [`Record::from_json_value`], so serde users get the same
            /// validation (and messages) as the JSONL reader.
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let value = Value::deserialize(d)?;
                <$t as Record>::from_json_value(value).map_err(serde::de::Error::custom)
            }
        }
    )*};
}
deserialize_via_record!(PromptRecord, Demonstration, Ranking, PretrainText);

macro_rules! impl_has_user {
    ($($t:ty),*) => {$(
        impl HasUser for $t {
            fn user_id(&self) -> &str {
                &self.user_id
            }
        }
    )*};
}
impl_has_user!(PromptRecord, Demonstration, Ranking, PretrainText);

macro_rules! impl_has_prompt {
    ($($t:ty),*) => {$(
        impl HasPrompt for $t {
            fn prompt(&self) -> &str {
                &self.prompt
            }
        }
    )*};
}
impl_has_prompt!(PromptRecord, Demonstration, Ranking);

impl TextFields for PromptRecord {
    fn record_id(&self) -> &str {
        &self.id
    }
    fn text_fields_mut(&mut self) -> Vec<(&'static str, &mut String)> {
        vec![("prompt", &mut self.prompt)]
    }
}

impl TextFields for Demonstration {
    fn record_id(&self) -> &str {
        &self.id
    }
    fn text_fields_mut(&mut self) -> Vec<(&'static str, &mut String)> {
        vec![
            ("prompt", &mut self.prompt),
            ("response", &mut self.response),
        ]
    }
}

impl TextFields for Ranking {
    fn record_id(&self) -> &str {
        &self.id
    }
    fn text_fields_mut(&mut self) -> Vec<(&'static str, &mut String)> {
        let mut out: Vec<(&'static str, &mut String)> = vec![("prompt", &mut self.prompt)];
        out.extend(self.responses.iter_mut().map(|r| ("responses", r)));
        out
    }
}

impl TextFields for PretrainText {
    fn record_id(&self) -> &str {
        &self.id
    }
    fn text_fields_mut(&mut self) -> Vec<(&'static str, &mut String)> {
        vec![("text", &mut self.text)]
    }
}
