//! The receiver's verdicts: a parser for the `Authentication-Results` header (RFC 8601),
//! reduced to what the canary reports, the spf, dkim and dmarc results.
//!
//! Only the topmost instance is read (the caller passes the first one in header order):
//! the sink's own server adds its header above everything that came with the message, so
//! any lower instance may be forged upstream.

/// The `method` label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "lowercase")]
pub enum Method {
    Spf,
    Dkim,
    Dmarc,
}

impl Method {
    pub const ALL: &'static [Method] = <Method as strum::VariantArray>::VARIANTS;

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The `result` label values of `delivery_auth_result`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[strum(serialize_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    Softfail,
    Neutral,
    None,
    Temperror,
    Permerror,
    Policy,
    Other,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    fn from_word(w: &str) -> Verdict {
        match w.to_ascii_lowercase().as_str() {
            // RFC 7001's older spelling for SPF.
            "hardfail" => Verdict::Fail,
            other => other.parse().unwrap_or(Verdict::Other),
        }
    }
}

/// What one Authentication-Results header says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthResults {
    /// Who added it (the sink's server, if it is the topmost instance).
    pub authserv_id: String,
    /// One verdict per method, in [`Method::ALL`] order; absent methods are left out.
    pub verdicts: Vec<(Method, Verdict)>,
}

impl AuthResults {
    pub fn get(&self, m: Method) -> Option<Verdict> {
        self.verdicts.iter().find(|(x, _)| *x == m).map(|(_, v)| *v)
    }
}

/// The longest header value read; a longer one is cut (a real one is a few hundred bytes).
const MAX_VALUE: usize = 16 * 1024;

/// Parses one header value. Never fails: what cannot be read is left out. With several
/// results for one method (a message with two DKIM signatures), a `pass` wins, else the
/// first one counts.
pub fn parse(value: &str) -> AuthResults {
    let value = &value[..floor_char_boundary(value, MAX_VALUE)];
    let cleaned = strip_comments(value);
    let mut parts = split_outside_quotes(&cleaned, ';').into_iter();
    let authserv_id = parts
        .next()
        .and_then(|p| p.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default();
    let mut verdicts: Vec<(Method, Verdict)> = Vec::new();
    for part in parts {
        let part = part.trim();
        let Some((method, rest)) = part.split_once('=') else {
            continue;
        };
        // `method/version = result`
        let method = method.trim().split('/').next().unwrap_or("").trim();
        let Some(method) = Method::ALL
            .iter()
            .copied()
            .find(|m| m.as_str().eq_ignore_ascii_case(method))
        else {
            continue;
        };
        let word = rest.split_whitespace().next().unwrap_or("");
        let verdict = Verdict::from_word(word);
        match verdicts.iter_mut().find(|(m, _)| *m == method) {
            Some(existing) if verdict == Verdict::Pass => existing.1 = Verdict::Pass,
            Some(_) => {}
            None => verdicts.push((method, verdict)),
        }
    }
    verdicts.sort_by_key(|(m, _)| Method::ALL.iter().position(|x| x == m));
    AuthResults {
        authserv_id,
        verdicts,
    }
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    (0..=max)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0)
}

/// Removes RFC 5322 comments (nested parentheses), keeping quoted strings intact.
fn strip_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    for c in s.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => {
                depth -= 1;
                out.push(' ');
            }
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_three_methods() {
        let r = parse(
            "mx.sink.test; spf=pass smtp.mailfrom=a@b.test;\r\n\tdkim=pass (2048-bit key; secure) header.d=b.test header.s=s1 header.b=abc;\r\n dmarc=fail (p=reject) header.from=b.test",
        );
        assert_eq!(r.authserv_id, "mx.sink.test");
        assert_eq!(r.get(Method::Spf), Some(Verdict::Pass));
        assert_eq!(r.get(Method::Dkim), Some(Verdict::Pass));
        assert_eq!(r.get(Method::Dmarc), Some(Verdict::Fail));
    }

    #[test]
    fn odd_inputs() {
        assert_eq!(parse("mx.example; none").verdicts, vec![]);
        let r = parse("mx 1; dkim = neutral reason=\"bad; sig\"; spf=hardfail; dkim=pass");
        assert_eq!(r.get(Method::Dkim), Some(Verdict::Pass));
        assert_eq!(r.get(Method::Spf), Some(Verdict::Fail));
        assert_eq!(
            parse("x; dmarc=bestguesspass").get(Method::Dmarc),
            Some(Verdict::Other)
        );
        assert_eq!(parse("").authserv_id, "");
        // Unbalanced comments and quotes never panic.
        let _ = parse("a; (((dkim=pass; \"spf=fail");
        let _ = parse(&"é".repeat(20_000));
    }
}
