//! Intrinsic functions (`States.Format(...)` and friends) in `key.$` values:
//! a small parser for the call syntax and the functions themselves.

use base64::Engine;
use serde_json::{Map, Value};

use super::path::Path;

/// A parsed intrinsic call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    name: String,
    args: Vec<Arg>,
}

/// One argument of a call.
#[derive(Debug, Clone, PartialEq)]
enum Arg {
    /// A quoted string: `raw` keeps backslash escapes (Format needs `\{`), `text` is unescaped.
    Str {
        raw: String,
        text: String,
    },
    Literal(Value),
    Path(Path),
    Call(Call),
}

const FUNCTIONS: &[&str] = &[
    "States.Format",
    "States.StringToJson",
    "States.JsonToString",
    "States.Array",
    "States.MathAdd",
    "States.JsonMerge",
    "States.ArrayLength",
    "States.ArrayGetItem",
    "States.ArrayContains",
    "States.ArrayRange",
    "States.StringSplit",
    "States.UUID",
    "States.Base64Encode",
    "States.Base64Decode",
];

impl Call {
    /// Parses a whole expression such as `States.Format('{}', $.a)`.
    pub fn parse(expr: &str) -> Result<Call, String> {
        let chars: Vec<char> = expr.trim().chars().collect();
        let mut pos = 0;
        let call = parse_call(&chars, &mut pos)?;
        skip_ws(&chars, &mut pos);
        if pos != chars.len() {
            return Err(format!("unexpected text after the call in {expr:?}"));
        }
        Ok(call)
    }

    /// Evaluates the call against the input and the context object.
    pub fn eval(&self, input: &Value, context: &Value) -> Result<Value, String> {
        let mut args = Vec::with_capacity(self.args.len());
        for a in &self.args {
            args.push(match a {
                Arg::Str { text, .. } => Value::String(text.clone()),
                Arg::Literal(v) => v.clone(),
                Arg::Path(p) => p
                    .select(input, context)
                    .cloned()
                    .ok_or_else(|| format!("{}: no value at the path argument", self.name))?,
                Arg::Call(c) => c.eval(input, context)?,
            });
        }
        let name = self.name.as_str();
        let arity = |n: usize| -> Result<(), String> {
            if args.len() == n {
                Ok(())
            } else {
                Err(format!("{name} takes {n} argument(s), got {}", args.len()))
            }
        };
        match name {
            "States.Format" => {
                let Some(Arg::Str { raw, .. }) = self.args.first() else {
                    return Err("States.Format needs a string literal template first".into());
                };
                format(raw, &args[1..])
            }
            "States.StringToJson" => {
                arity(1)?;
                let s = args[0]
                    .as_str()
                    .ok_or("States.StringToJson needs a string")?;
                serde_json::from_str(s).map_err(|e| format!("States.StringToJson: {e}"))
            }
            "States.JsonToString" => {
                arity(1)?;
                Ok(Value::String(args[0].to_string()))
            }
            "States.Array" => Ok(Value::Array(args)),
            "States.MathAdd" => {
                arity(2)?;
                let (Some(a), Some(b)) = (args[0].as_i64(), args[1].as_i64()) else {
                    return Err("States.MathAdd needs two integers".into());
                };
                a.checked_add(b)
                    .map(Value::from)
                    .ok_or_else(|| "States.MathAdd overflowed".into())
            }
            "States.JsonMerge" => {
                arity(3)?;
                if args[2] != Value::Bool(false) {
                    return Err("States.JsonMerge supports only shallow merges (false)".into());
                }
                let (Value::Object(a), Value::Object(b)) = (&args[0], &args[1]) else {
                    return Err("States.JsonMerge needs two objects".into());
                };
                let mut out: Map<String, Value> = a.clone();
                for (k, v) in b {
                    out.insert(k.clone(), v.clone());
                }
                Ok(Value::Object(out))
            }
            "States.ArrayLength" => {
                arity(1)?;
                let a = args[0]
                    .as_array()
                    .ok_or("States.ArrayLength needs an array")?;
                Ok(Value::from(a.len()))
            }
            "States.ArrayGetItem" => {
                arity(2)?;
                let a = args[0]
                    .as_array()
                    .ok_or("States.ArrayGetItem needs an array")?;
                let i = args[1]
                    .as_u64()
                    .ok_or("States.ArrayGetItem needs an index")?;
                a.get(i as usize)
                    .cloned()
                    .ok_or_else(|| format!("States.ArrayGetItem: index {i} out of bounds"))
            }
            "States.ArrayContains" => {
                arity(2)?;
                let a = args[0]
                    .as_array()
                    .ok_or("States.ArrayContains needs an array")?;
                Ok(Value::Bool(a.contains(&args[1])))
            }
            "States.ArrayRange" => {
                arity(3)?;
                let (Some(start), Some(end), Some(step)) =
                    (args[0].as_i64(), args[1].as_i64(), args[2].as_i64())
                else {
                    return Err("States.ArrayRange needs three integers".into());
                };
                if step == 0 {
                    return Err("States.ArrayRange: step must not be 0".into());
                }
                let mut out = Vec::new();
                let mut x = start;
                while (step > 0 && x <= end) || (step < 0 && x >= end) {
                    out.push(Value::from(x));
                    if out.len() > 1000 {
                        return Err("States.ArrayRange: more than 1000 items".into());
                    }
                    x += step;
                }
                Ok(Value::Array(out))
            }
            "States.StringSplit" => {
                arity(2)?;
                let (Some(s), Some(d)) = (args[0].as_str(), args[1].as_str()) else {
                    return Err("States.StringSplit needs two strings".into());
                };
                let parts = s
                    .split(|c: char| d.contains(c))
                    .filter(|p| !p.is_empty())
                    .map(|p| Value::String(p.to_string()))
                    .collect();
                Ok(Value::Array(parts))
            }
            "States.UUID" => {
                arity(0)?;
                Ok(Value::String(uuid::Uuid::new_v4().to_string()))
            }
            "States.Base64Encode" => {
                arity(1)?;
                let s = args[0]
                    .as_str()
                    .ok_or("States.Base64Encode needs a string")?;
                Ok(Value::String(
                    base64::engine::general_purpose::STANDARD.encode(s),
                ))
            }
            "States.Base64Decode" => {
                arity(1)?;
                let s = args[0]
                    .as_str()
                    .ok_or("States.Base64Decode needs a string")?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|e| format!("States.Base64Decode: {e}"))?;
                String::from_utf8(bytes)
                    .map(Value::String)
                    .map_err(|_| "States.Base64Decode: not UTF-8".into())
            }
            other => Err(format!("unsupported intrinsic function {other}")),
        }
    }
}

/// `States.Format`: `{}` takes the next argument (see [`format_value`]);
/// `\{`, `\}`, `\'` and `\\` are literal characters.
fn format(raw: &str, args: &[Value]) -> Result<Value, String> {
    let mut out = String::new();
    let mut it = raw.chars().peekable();
    let mut next_arg = args.iter();
    while let Some(c) = it.next() {
        match c {
            '\\' => {
                if let Some(e) = it.next() {
                    out.push(e);
                }
            }
            '{' if it.peek() == Some(&'}') => {
                it.next();
                match next_arg.next() {
                    Some(v) => out.push_str(&format_value(v)),
                    None => return Err("States.Format: more {} than arguments".into()),
                }
            }
            c => out.push(c),
        }
    }
    if next_arg.next().is_some() {
        return Err("States.Format: more arguments than {}".into());
    }
    Ok(Value::String(out))
}

/// How Step Functions renders a value inside `States.Format`: strings as is,
/// arrays as `[a, b]`, objects as `{k=v, k2=v2}` (Java's map style), other
/// values as JSON.
fn format_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(format_value)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{k}={}", format_value(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

fn skip_ws(chars: &[char], pos: &mut usize) {
    while *pos < chars.len() && chars[*pos].is_whitespace() {
        *pos += 1;
    }
}

fn parse_call(chars: &[char], pos: &mut usize) -> Result<Call, String> {
    skip_ws(chars, pos);
    let start = *pos;
    while *pos < chars.len() && (chars[*pos].is_alphanumeric() || chars[*pos] == '.') {
        *pos += 1;
    }
    let name: String = chars[start..*pos].iter().collect();
    if !FUNCTIONS.contains(&name.as_str()) {
        return Err(format!("unsupported intrinsic function {name:?}"));
    }
    skip_ws(chars, pos);
    if chars.get(*pos) != Some(&'(') {
        return Err(format!("expected ( after {name}"));
    }
    *pos += 1;
    let mut args = Vec::new();
    skip_ws(chars, pos);
    if chars.get(*pos) == Some(&')') {
        *pos += 1;
        return Ok(Call { name, args });
    }
    loop {
        args.push(parse_arg(chars, pos)?);
        skip_ws(chars, pos);
        match chars.get(*pos) {
            Some(',') => *pos += 1,
            Some(')') => {
                *pos += 1;
                return Ok(Call { name, args });
            }
            _ => return Err(format!("expected , or ) in the arguments of {name}")),
        }
    }
}

fn parse_arg(chars: &[char], pos: &mut usize) -> Result<Arg, String> {
    skip_ws(chars, pos);
    match chars.get(*pos) {
        Some('\'') => {
            *pos += 1;
            let mut raw = String::new();
            let mut text = String::new();
            loop {
                match chars.get(*pos) {
                    None => return Err("unterminated string literal".into()),
                    Some('\\') => {
                        let e = *chars.get(*pos + 1).ok_or("dangling backslash")?;
                        raw.push('\\');
                        raw.push(e);
                        text.push(e);
                        *pos += 2;
                    }
                    Some('\'') => {
                        *pos += 1;
                        return Ok(Arg::Str { raw, text });
                    }
                    Some(c) => {
                        raw.push(*c);
                        text.push(*c);
                        *pos += 1;
                    }
                }
            }
        }
        Some('$') => {
            let start = *pos;
            let mut depth = 0usize;
            let mut quote: Option<char> = None;
            while let Some(&c) = chars.get(*pos) {
                match (quote, c) {
                    (Some(q), c) if c == q => quote = None,
                    (Some(_), _) => {}
                    (None, '\'' | '"') => quote = Some(c),
                    (None, '[') => depth += 1,
                    (None, ']') => depth = depth.saturating_sub(1),
                    (None, ',' | ')') if depth == 0 => break,
                    (None, c) if c.is_whitespace() && depth == 0 => break,
                    _ => {}
                }
                *pos += 1;
            }
            let text: String = chars[start..*pos].iter().collect();
            Path::parse(&text).map(Arg::Path)
        }
        Some(c) if c.is_alphabetic() => {
            let start = *pos;
            while *pos < chars.len() && (chars[*pos].is_alphanumeric() || chars[*pos] == '.') {
                *pos += 1;
            }
            let word: String = chars[start..*pos].iter().collect();
            match word.as_str() {
                "true" => Ok(Arg::Literal(Value::Bool(true))),
                "false" => Ok(Arg::Literal(Value::Bool(false))),
                "null" => Ok(Arg::Literal(Value::Null)),
                _ => {
                    *pos = start;
                    parse_call(chars, pos).map(Arg::Call)
                }
            }
        }
        Some(c) if c.is_ascii_digit() || *c == '-' => {
            let start = *pos;
            *pos += 1;
            while *pos < chars.len()
                && (chars[*pos].is_ascii_digit()
                    || matches!(chars[*pos], '.' | 'e' | 'E' | '+' | '-'))
            {
                *pos += 1;
            }
            let text: String = chars[start..*pos].iter().collect();
            serde_json::from_str::<Value>(&text)
                .ok()
                .filter(Value::is_number)
                .map(Arg::Literal)
                .ok_or_else(|| format!("bad number {text:?}"))
        }
        _ => Err("expected an argument".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(expr: &str, input: Value) -> Result<Value, String> {
        Call::parse(expr)?.eval(&input, &json!({"Execution": {"Name": "run-1"}}))
    }

    #[test]
    fn format_interpolates_and_escapes() {
        let input = json!({"a": "x", "n": 3, "o": {"k": 1, "l": [1, true, null]}});
        assert_eq!(
            eval(
                "States.Format('a={} n={} o={}', $.a, $.n, $.o)",
                input.clone()
            )
            .unwrap(),
            json!("a=x n=3 o={k=1, l=[1, true, null]}")
        );
        assert_eq!(
            eval(
                r"States.Format('\{literal\} {} it\'s', $$.Execution.Name)",
                input.clone()
            )
            .unwrap(),
            json!("{literal} run-1 it's")
        );
        assert!(eval("States.Format('{} {}', $.a)", input.clone()).is_err());
        assert!(eval("States.Format('{}', $.missing)", input).is_err());
    }

    #[test]
    fn json_functions_and_arrays() {
        let input = json!({"s": "{\"q\":[1,2]}", "o": {"a": 1, "b": 2}, "p": {"b": 3}});
        assert_eq!(
            eval("States.StringToJson($.s)", input.clone()).unwrap(),
            json!({"q": [1, 2]})
        );
        assert_eq!(
            eval("States.JsonToString($.o)", input.clone()).unwrap(),
            json!("{\"a\":1,\"b\":2}")
        );
        assert_eq!(
            eval("States.JsonMerge($.o, $.p, false)", input.clone()).unwrap(),
            json!({"a": 1, "b": 3})
        );
        assert!(eval("States.JsonMerge($.o, $.p, true)", input.clone()).is_err());
        assert_eq!(
            eval("States.Array('x', 2, true, null, $.p)", input.clone()).unwrap(),
            json!(["x", 2, true, null, {"b": 3}])
        );
        assert_eq!(
            eval("States.ArrayLength(States.Array(1, 2, 3))", input.clone()).unwrap(),
            json!(3)
        );
        assert_eq!(
            eval("States.ArrayGetItem(States.Array(5, 6), 1)", input.clone()).unwrap(),
            json!(6)
        );
        assert_eq!(
            eval("States.ArrayContains(States.Array(5, 6), 6)", input.clone()).unwrap(),
            json!(true)
        );
        assert_eq!(
            eval("States.ArrayRange(1, 7, 3)", input.clone()).unwrap(),
            json!([1, 4, 7])
        );
        assert_eq!(
            eval("States.StringSplit('a,b;;c', ',;')", input).unwrap(),
            json!(["a", "b", "c"])
        );
    }

    #[test]
    fn math_add_needs_integers() {
        let input = json!({"n": 40, "f": 1.5});
        assert_eq!(
            eval("States.MathAdd($.n, 2)", input.clone()).unwrap(),
            json!(42)
        );
        assert_eq!(
            eval("States.MathAdd($.n, -50)", input.clone()).unwrap(),
            json!(-10)
        );
        assert!(eval("States.MathAdd($.f, 2)", input).is_err());
    }

    #[test]
    fn parse_errors() {
        assert!(Call::parse("States.Nope(1)").is_err());
        assert!(Call::parse("States.Format('x'").is_err());
        assert!(Call::parse("States.Array(1) trailing").is_err());
        assert!(Call::parse("States.Format('unterminated)").is_err());
    }
}
