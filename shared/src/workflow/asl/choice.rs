//! Choice rules: comparison operators (String*, Numeric*, Boolean*,
//! Timestamp*, each with a `…Path` form), type tests (`IsPresent`, `IsNull`, …)
//! and the `And`/`Or`/`Not` combinators.

use std::cmp::Ordering;

use serde_json::Value;

use super::path::Path;
use super::TaskFailure;

/// A parsed choice rule.
#[derive(Debug, Clone, PartialEq)]
pub enum ChoiceRule {
    /// All must match.
    And(Vec<ChoiceRule>),
    /// Any must match.
    Or(Vec<ChoiceRule>),
    /// Must not match.
    Not(Box<ChoiceRule>),
    /// A comparison of the value at `variable`.
    Compare {
        /// Where the value is read.
        variable: Path,
        /// The operator.
        op: Op,
        /// What it is compared with.
        operand: Operand,
    },
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A literal from the definition.
    Value(Value),
    /// A value read from the input (`…Path` operators).
    Path(Path),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Compares strings, numbers, booleans or timestamps with `Ordering`s that count as a match.
    Cmp(Kind, &'static [Ordering]),
    /// `StringMatches` with `*` wildcards.
    StringMatches,
    /// `IsPresent`.
    IsPresent,
    /// `IsNull`.
    IsNull,
    /// `IsString`.
    IsString,
    /// `IsNumeric`.
    IsNumeric,
    /// `IsBoolean`.
    IsBoolean,
    /// `IsTimestamp`.
    IsTimestamp,
}

/// The type a comparison operator works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `String…`.
    String,
    /// `Numeric…`.
    Numeric,
    /// `Boolean…`.
    Boolean,
    /// `Timestamp…`.
    Timestamp,
}

const EQ: &[Ordering] = &[Ordering::Equal];
const LT: &[Ordering] = &[Ordering::Less];
const GT: &[Ordering] = &[Ordering::Greater];
const LE: &[Ordering] = &[Ordering::Less, Ordering::Equal];
const GE: &[Ordering] = &[Ordering::Greater, Ordering::Equal];

fn operator(name: &str) -> Option<(Op, bool)> {
    let (base, is_path) = match name.strip_suffix("Path") {
        Some(b) => (b, true),
        None => (name, false),
    };
    let cmp = |rest: &str| -> Option<&'static [Ordering]> {
        Some(match rest {
            "Equals" => EQ,
            "LessThan" => LT,
            "GreaterThan" => GT,
            "LessThanEquals" => LE,
            "GreaterThanEquals" => GE,
            _ => return None,
        })
    };
    let op = if let Some(r) = base.strip_prefix("String") {
        if r == "Matches" {
            if is_path {
                return None;
            }
            Op::StringMatches
        } else {
            Op::Cmp(Kind::String, cmp(r)?)
        }
    } else if let Some(r) = base.strip_prefix("Numeric") {
        Op::Cmp(Kind::Numeric, cmp(r)?)
    } else if let Some(r) = base.strip_prefix("Timestamp") {
        Op::Cmp(Kind::Timestamp, cmp(r)?)
    } else if base == "BooleanEquals" {
        Op::Cmp(Kind::Boolean, EQ)
    } else if !is_path {
        match base {
            "IsPresent" => Op::IsPresent,
            "IsNull" => Op::IsNull,
            "IsString" => Op::IsString,
            "IsNumeric" => Op::IsNumeric,
            "IsBoolean" => Op::IsBoolean,
            "IsTimestamp" => Op::IsTimestamp,
            _ => return None,
        }
    } else {
        return None;
    };
    Some((op, is_path))
}

impl ChoiceRule {
    /// Parses a top-level rule, which must carry `Next`.
    pub fn parse_top(raw: &Value) -> Result<(ChoiceRule, String), String> {
        let next = raw
            .get("Next")
            .and_then(Value::as_str)
            .ok_or("a top-level choice rule needs Next")?
            .to_string();
        Ok((Self::parse(raw, true)?, next))
    }

    fn parse(raw: &Value, top: bool) -> Result<ChoiceRule, String> {
        let Value::Object(map) = raw else {
            return Err("a choice rule must be an object".into());
        };
        let mut variable = None;
        let mut found: Option<ChoiceRule> = None;
        let mut set = |rule: ChoiceRule| -> Result<(), String> {
            if found.replace(rule).is_some() {
                Err("a choice rule must have exactly one operator".into())
            } else {
                Ok(())
            }
        };
        let mut pending_op = None;
        for (k, v) in map {
            match k.as_str() {
                "Next" if top => {}
                "Comment" => {}
                "Variable" => {
                    let s = v.as_str().ok_or("Variable must be a string")?;
                    variable = Some(Path::parse(s)?);
                }
                "And" | "Or" => {
                    let items = v.as_array().ok_or(format!("{k} must be an array"))?;
                    if items.is_empty() {
                        return Err(format!("{k} must not be empty"));
                    }
                    let rules = items
                        .iter()
                        .map(|r| Self::parse(r, false))
                        .collect::<Result<Vec<_>, _>>()?;
                    set(if k == "And" {
                        ChoiceRule::And(rules)
                    } else {
                        ChoiceRule::Or(rules)
                    })?;
                }
                "Not" => set(ChoiceRule::Not(Box::new(Self::parse(v, false)?)))?,
                other => {
                    let (op, is_path) = operator(other)
                        .ok_or(format!("unsupported field or operator {other:?}"))?;
                    if pending_op.is_some() {
                        return Err("a choice rule must have exactly one operator".into());
                    }
                    let operand = if is_path {
                        let s = v.as_str().ok_or(format!("{other} must be a path string"))?;
                        Operand::Path(Path::parse(s)?)
                    } else {
                        check_literal(other, op, v)?;
                        Operand::Value(v.clone())
                    };
                    pending_op = Some((op, operand));
                }
            }
        }
        match (found, pending_op, variable) {
            (Some(rule), None, None) => Ok(rule),
            (None, Some((op, operand)), Some(variable)) => Ok(ChoiceRule::Compare {
                variable,
                op,
                operand,
            }),
            (None, Some(_), None) => Err("a comparison needs Variable".into()),
            (None, None, _) => Err("a choice rule needs an operator".into()),
            _ => Err("a choice rule must have exactly one operator".into()),
        }
    }

    /// Evaluates the rule against the (effective) state input.
    pub fn matches(&self, input: &Value, context: &Value) -> Result<bool, TaskFailure> {
        match self {
            ChoiceRule::And(rules) => {
                for r in rules {
                    if !r.matches(input, context)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            ChoiceRule::Or(rules) => {
                for r in rules {
                    if r.matches(input, context)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            ChoiceRule::Not(r) => Ok(!r.matches(input, context)?),
            ChoiceRule::Compare {
                variable,
                op,
                operand,
            } => {
                let value = variable.select(input, context);
                let want = match operand {
                    Operand::Value(v) => v.clone(),
                    Operand::Path(p) => p.select(input, context).cloned().ok_or_else(|| {
                        TaskFailure::runtime(
                            "a choice rule's …Path operand was not found in the input",
                        )
                    })?,
                };
                let expect = want == Value::Bool(true);
                let Some(value) = value else {
                    if *op == Op::IsPresent {
                        return Ok(!expect);
                    }
                    return Err(TaskFailure::runtime(
                        "a choice rule's Variable was not found in the input",
                    ));
                };
                Ok(match op {
                    Op::IsPresent => expect,
                    Op::IsNull => value.is_null() == expect,
                    Op::IsString => value.is_string() == expect,
                    Op::IsNumeric => value.is_number() == expect,
                    Op::IsBoolean => value.is_boolean() == expect,
                    Op::IsTimestamp => value.as_str().and_then(timestamp).is_some() == expect,
                    Op::StringMatches => match (value.as_str(), want.as_str()) {
                        (Some(s), Some(pattern)) => glob(pattern, s),
                        _ => false,
                    },
                    Op::Cmp(kind, accepted) => {
                        compare(*kind, value, &want).is_some_and(|o| accepted.contains(&o))
                    }
                })
            }
        }
    }
}

fn check_literal(name: &str, op: Op, v: &Value) -> Result<(), String> {
    let ok = match op {
        Op::Cmp(Kind::String, _) | Op::StringMatches => v.is_string(),
        Op::Cmp(Kind::Numeric, _) => v.is_number(),
        Op::Cmp(Kind::Boolean, _) => v.is_boolean(),
        Op::Cmp(Kind::Timestamp, _) => v.as_str().and_then(timestamp).is_some(),
        _ => v.is_boolean(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{name} has a value of the wrong type: {v}"))
    }
}

fn timestamp(s: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(s).ok()
}

/// Orders two values of `kind`; `None` when either is of another type.
fn compare(kind: Kind, a: &Value, b: &Value) -> Option<Ordering> {
    match kind {
        Kind::String => Some(a.as_str()?.cmp(b.as_str()?)),
        Kind::Numeric => a.as_f64()?.partial_cmp(&b.as_f64()?),
        Kind::Boolean => Some(a.as_bool()?.cmp(&b.as_bool()?)),
        Kind::Timestamp => Some(timestamp(a.as_str()?)?.cmp(&timestamp(b.as_str()?)?)),
    }
}

/// `*` matches any run of characters; `\*` and `\\` are literal.
fn glob(pattern: &str, s: &str) -> bool {
    #[derive(PartialEq)]
    enum Tok {
        Star,
        Char(char),
    }
    let mut toks = Vec::new();
    let mut it = pattern.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => toks.push(Tok::Char(it.next().unwrap_or('\\'))),
            '*' => toks.push(Tok::Star),
            c => toks.push(Tok::Char(c)),
        }
    }
    let s: Vec<char> = s.chars().collect();
    // Classic two-pointer wildcard match with backtracking to the last star.
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match toks.get(p) {
            Some(Tok::Char(c)) if *c == s[i] => {
                p += 1;
                i += 1;
            }
            Some(Tok::Star) => {
                star = Some((p, i));
                p += 1;
            }
            _ => match star {
                Some((sp, si)) => {
                    p = sp + 1;
                    i = si + 1;
                    star = Some((sp, si + 1));
                }
                None => return false,
            },
        }
    }
    toks[p..].iter().all(|t| *t == Tok::Star)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(v: Value) -> ChoiceRule {
        let mut v = v;
        v["Next"] = json!("X");
        ChoiceRule::parse_top(&v).unwrap().0
    }

    fn m(r: Value, input: &Value) -> bool {
        rule(r).matches(input, &json!({})).unwrap()
    }

    #[test]
    fn glob_matches_wildcards() {
        assert!(glob("log-*.txt", "log-2024.txt"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b", "axxc"));
        assert!(glob(r"a\*", "a*"));
        assert!(!glob(r"a\*", "ab"));
    }

    #[test]
    fn parse_rejects_bad_rules() {
        let bad = [
            json!({"Variable": "$.a", "Next": "X"}),
            json!({"Variable": "$.a", "StringEquals": 1, "Next": "X"}),
            json!({"Variable": "$.a", "NumericEquals": "1", "Next": "X"}),
            json!({"Variable": "$.a", "StringEquals": "x", "NumericEquals": 1, "Next": "X"}),
            json!({"Variable": "$.a", "Bogus": 1, "Next": "X"}),
            json!({"Variable": "$.a", "StringEquals": "x"}),
            json!({"And": [], "Next": "X"}),
            json!({"Not": {"Variable": "$.a", "IsNull": true, "Next": "Y"}, "Next": "X"}),
            json!({"StringEquals": "x", "Next": "X"}),
        ];
        for b in bad {
            assert!(ChoiceRule::parse_top(&b).is_err(), "accepted {b}");
        }
    }

    #[test]
    fn missing_variable_is_a_runtime_error() {
        let r = rule(json!({"Variable": "$.nope", "StringEquals": "x"}));
        assert_eq!(
            r.matches(&json!({}), &json!({})).unwrap_err().error,
            "States.Runtime"
        );
        let r = rule(json!({"Variable": "$.a", "StringEqualsPath": "$.nope"}));
        assert!(r.matches(&json!({"a": "x"}), &json!({})).is_err());
        assert!(m(
            json!({"Variable": "$.nope", "IsPresent": false}),
            &json!({})
        ));
    }

    #[test]
    fn type_mismatch_is_false() {
        assert!(!m(
            json!({"Variable": "$.a", "StringEquals": "1"}),
            &json!({"a": 1})
        ));
        assert!(!m(
            json!({"Variable": "$.a", "NumericEquals": 1}),
            &json!({"a": "1"})
        ));
        assert!(!m(
            json!({"Variable": "$.a", "BooleanEquals": true}),
            &json!({"a": "true"})
        ));
    }
}
