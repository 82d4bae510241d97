//! Reference paths: the JSONPath subset ASL uses to read (`InputPath`,
//! `ItemsPath`, `Variable`, `key.$`) and write (`ResultPath`) parts of a
//! document — `$`, `$.a.b`, `$.a[0]`, `$['a b']`, and `$$.…` for the context object.

use serde_json::{Map, Value};

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Field(String),
    Index(usize),
}

/// A parsed reference path.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    /// `$$…`: reads the context object instead of the input.
    pub context: bool,
    segments: Vec<Segment>,
}

impl Path {
    /// Parses `$…` or `$$…`.
    pub fn parse(expr: &str) -> Result<Path, String> {
        let (context, rest) = if let Some(r) = expr.strip_prefix("$$") {
            (true, r)
        } else if let Some(r) = expr.strip_prefix('$') {
            (false, r)
        } else {
            return Err(format!("path {expr:?} must start with $"));
        };
        let bad = |why: &str| format!("path {expr:?}: {why}");
        let chars: Vec<char> = rest.chars().collect();
        let mut i = 0;
        let mut segments = Vec::new();
        while i < chars.len() {
            match chars[i] {
                '.' => {
                    let start = i + 1;
                    let mut j = start;
                    while j < chars.len() && chars[j] != '.' && chars[j] != '[' {
                        j += 1;
                    }
                    if j == start {
                        return Err(bad("empty field name"));
                    }
                    let name: String = chars[start..j].iter().collect();
                    if name == "*" || name.contains(['*', '?', '@', ' ']) {
                        return Err(bad("wildcards and filters are not supported"));
                    }
                    segments.push(Segment::Field(name));
                    i = j;
                }
                '[' => {
                    let close = chars[i..]
                        .iter()
                        .position(|c| *c == ']')
                        .map(|p| p + i)
                        .ok_or_else(|| bad("unclosed ["))?;
                    let inner: String = chars[i + 1..close].iter().collect();
                    let inner = inner.trim();
                    if let Some(quoted) = inner
                        .strip_prefix('\'')
                        .and_then(|s| s.strip_suffix('\''))
                        .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                    {
                        segments.push(Segment::Field(quoted.to_string()));
                    } else {
                        let idx: usize = inner
                            .parse()
                            .map_err(|_| bad("only [n] and ['name'] are supported in brackets"))?;
                        segments.push(Segment::Index(idx));
                    }
                    i = close + 1;
                }
                _ => return Err(bad("expected . or [")),
            }
        }
        Ok(Path { context, segments })
    }

    /// The value at this path, or `None` if any step is missing.
    pub fn select<'a>(&self, input: &'a Value, context: &'a Value) -> Option<&'a Value> {
        let mut cur = if self.context { context } else { input };
        for seg in &self.segments {
            cur = match (seg, cur) {
                (Segment::Field(f), Value::Object(m)) => m.get(f)?,
                (Segment::Index(i), Value::Array(a)) => a.get(*i)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    /// Writes `value` at this path inside `target`, creating objects on the way;
    /// `$` replaces the whole document. Fails if the path crosses a non-object.
    pub fn set(&self, target: Value, value: Value) -> Result<Value, String> {
        if self.context {
            return Err("a ResultPath cannot point into the context object ($$)".into());
        }
        if self.segments.is_empty() {
            return Ok(value);
        }
        let mut root = target;
        let mut cur = &mut root;
        let last = self.segments.len() - 1;
        for (i, seg) in self.segments.iter().enumerate() {
            match seg {
                Segment::Field(f) => {
                    if cur.is_null() && i == 0 {
                        *cur = Value::Object(Map::new());
                    }
                    let Value::Object(map) = cur else {
                        return Err(format!(
                            "cannot set field {f:?}: the value there is not an object"
                        ));
                    };
                    if i == last {
                        map.insert(f.clone(), value);
                        return Ok(root);
                    }
                    cur = map
                        .entry(f.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if cur.is_null() {
                        *cur = Value::Object(Map::new());
                    }
                }
                Segment::Index(idx) => {
                    let Value::Array(items) = cur else {
                        return Err(format!(
                            "cannot set index {idx}: the value there is not an array"
                        ));
                    };
                    let Some(slot) = items.get_mut(*idx) else {
                        return Err(format!("index {idx} is out of bounds"));
                    };
                    if i == last {
                        *slot = value;
                        return Ok(root);
                    }
                    cur = slot;
                }
            }
        }
        Ok(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selects_fields_indices_and_quoted_names() {
        let doc = json!({"a": {"b": [10, {"c d": 5}]}});
        let ctx = json!({"Execution": {"Name": "n"}});
        let p = |s: &str| Path::parse(s).unwrap();
        assert_eq!(p("$").select(&doc, &ctx), Some(&doc));
        assert_eq!(p("$.a.b[0]").select(&doc, &ctx), Some(&json!(10)));
        assert_eq!(p("$.a.b[1]['c d']").select(&doc, &ctx), Some(&json!(5)));
        assert_eq!(p("$$.Execution.Name").select(&doc, &ctx), Some(&json!("n")));
        assert_eq!(p("$.a.x").select(&doc, &ctx), None);
        assert_eq!(p("$.a.b[9]").select(&doc, &ctx), None);
    }

    #[test]
    fn rejects_unsupported_syntax() {
        assert!(Path::parse("a.b").is_err());
        assert!(Path::parse("$.a[*]").is_err());
        assert!(Path::parse("$..a").is_err());
        assert!(Path::parse("$.a[").is_err());
    }

    #[test]
    fn sets_nested_values() {
        let p = |s: &str| Path::parse(s).unwrap();
        assert_eq!(p("$").set(json!({"a": 1}), json!(2)).unwrap(), json!(2));
        assert_eq!(
            p("$.r.x").set(json!({"a": 1}), json!(2)).unwrap(),
            json!({"a": 1, "r": {"x": 2}})
        );
        assert_eq!(
            p("$.a").set(json!({"a": 1}), json!({"z": true})).unwrap(),
            json!({"a": {"z": true}})
        );
        assert!(p("$.a.b").set(json!({"a": 1}), json!(2)).is_err());
        assert!(p("$$.a").set(json!({}), json!(2)).is_err());
    }
}
