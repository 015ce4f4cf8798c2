//! KEDA `scalingModifiers.formula`: arithmetic over trigger values.
//!
//! Supported: numbers, trigger names, `+ - * /`, parentheses, unary `-` and `!`, comparisons
//! (`< <= > >= == !=`), `&&`, `||`, and the ternary `cond ? a : b`. Comparisons and logic yield 1 or 0;
//! a condition is true when non-zero. This is the subset of expr-lang that KEDA's documented formulas use.

/// Why a formula could not be parsed or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormulaError {
    /// The text is not a formula; the message says where.
    #[error("formula {formula:?}: {message} at column {column}")]
    Syntax {
        /// The formula text.
        formula: String,
        /// What was wrong.
        message: String,
        /// 1-based column.
        column: usize,
    },
    /// The formula names a trigger that has no value.
    #[error("formula refers to unknown trigger {0:?}")]
    UnknownTrigger(String),
    /// The result (or an intermediate value) is not a finite number, e.g. a division by zero.
    #[error("formula result is not a finite number")]
    NotFinite,
}

/// A parsed formula.
#[derive(Debug, Clone, PartialEq)]
pub struct Formula {
    root: Node,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Number(f64),
    Var(String),
    Neg(Box<Node>),
    Not(Box<Node>),
    Binary(Op, Box<Node>, Box<Node>),
    Ternary(Box<Node>, Box<Node>, Box<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Ident(String),
    Op(&'static str),
}

/// Nesting deeper than this is rejected, so a hostile formula cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

impl Formula {
    /// Parses a formula.
    pub fn parse(text: &str) -> Result<Self, FormulaError> {
        let tokens = tokenize(text)?;
        let mut p = Parser {
            text,
            tokens,
            pos: 0,
            depth: 0,
        };
        let root = p.ternary()?;
        if p.pos < p.tokens.len() {
            return Err(p.error("unexpected token"));
        }
        Ok(Self { root })
    }

    /// The trigger names the formula reads.
    pub fn variables(&self) -> Vec<String> {
        let mut out = Vec::new();
        collect(&self.root, &mut out);
        out.sort();
        out.dedup();
        out
    }

    /// Evaluates with trigger values looked up by name.
    pub fn eval(&self, lookup: &dyn Fn(&str) -> Option<f64>) -> Result<f64, FormulaError> {
        let v = eval(&self.root, lookup)?;
        if v.is_finite() {
            Ok(v)
        } else {
            Err(FormulaError::NotFinite)
        }
    }
}

fn collect(node: &Node, out: &mut Vec<String>) {
    match node {
        Node::Number(_) => {}
        Node::Var(v) => out.push(v.clone()),
        Node::Neg(a) | Node::Not(a) => collect(a, out),
        Node::Binary(_, a, b) => {
            collect(a, out);
            collect(b, out);
        }
        Node::Ternary(c, a, b) => {
            collect(c, out);
            collect(a, out);
            collect(b, out);
        }
    }
}

fn truth(v: f64) -> bool {
    v != 0.0
}

fn bool_value(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

fn eval(node: &Node, lookup: &dyn Fn(&str) -> Option<f64>) -> Result<f64, FormulaError> {
    let v = match node {
        Node::Number(n) => *n,
        Node::Var(name) => {
            lookup(name).ok_or_else(|| FormulaError::UnknownTrigger(name.clone()))?
        }
        Node::Neg(a) => -eval(a, lookup)?,
        Node::Not(a) => bool_value(!truth(eval(a, lookup)?)),
        Node::Ternary(c, a, b) => {
            if truth(eval(c, lookup)?) {
                eval(a, lookup)?
            } else {
                eval(b, lookup)?
            }
        }
        Node::Binary(op, a, b) => {
            let x = eval(a, lookup)?;
            // Short-circuit logic, as expr-lang does.
            match op {
                Op::And if !truth(x) => return Ok(0.0),
                Op::Or if truth(x) => return Ok(1.0),
                _ => {}
            }
            let y = eval(b, lookup)?;
            match op {
                Op::Add => x + y,
                Op::Sub => x - y,
                Op::Mul => x * y,
                Op::Div => x / y,
                Op::Lt => bool_value(x < y),
                Op::Le => bool_value(x <= y),
                Op::Gt => bool_value(x > y),
                Op::Ge => bool_value(x >= y),
                Op::Eq => bool_value(x == y),
                Op::Ne => bool_value(x != y),
                Op::And | Op::Or => bool_value(truth(y)),
            }
        }
    };
    if v.is_finite() {
        Ok(v)
    } else {
        Err(FormulaError::NotFinite)
    }
}

fn tokenize(text: &str) -> Result<Vec<(Token, usize)>, FormulaError> {
    let syntax = |message: &str, column: usize| FormulaError::Syntax {
        formula: text.to_owned(),
        message: message.to_owned(),
        column,
    };
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let s: String = chars[start..i].iter().collect();
            let n: f64 = s.parse().map_err(|_| syntax("invalid number", column))?;
            out.push((Token::Number(n), column));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            match s.as_str() {
                "and" => out.push((Token::Op("&&"), column)),
                "or" => out.push((Token::Op("||"), column)),
                "not" => out.push((Token::Op("!"), column)),
                "true" => out.push((Token::Number(1.0), column)),
                "false" => out.push((Token::Number(0.0), column)),
                _ => out.push((Token::Ident(s), column)),
            }
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = match two.as_str() {
                "<=" => Some("<="),
                ">=" => Some(">="),
                "==" => Some("=="),
                "!=" => Some("!="),
                "&&" => Some("&&"),
                "||" => Some("||"),
                _ => None,
            };
            if let Some(op) = op {
                out.push((Token::Op(op), column));
                i += 2;
                continue;
            }
            let op = match c {
                '+' => "+",
                '-' => "-",
                '*' => "*",
                '/' => "/",
                '(' => "(",
                ')' => ")",
                '<' => "<",
                '>' => ">",
                '?' => "?",
                ':' => ":",
                '!' => "!",
                _ => return Err(syntax(&format!("unexpected character {c:?}"), column)),
            };
            out.push((Token::Op(op), column));
            i += 1;
        }
    }
    Ok(out)
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<(Token, usize)>,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, message: &str) -> FormulaError {
        let column = self
            .tokens
            .get(self.pos)
            .map_or(self.text.chars().count() + 1, |(_, c)| *c);
        FormulaError::Syntax {
            formula: self.text.to_owned(),
            message: message.to_owned(),
            column,
        }
    }

    fn peek_op(&self) -> Option<&'static str> {
        match self.tokens.get(self.pos) {
            Some((Token::Op(op), _)) => Some(op),
            _ => None,
        }
    }

    fn eat(&mut self, op: &str) -> bool {
        if self.peek_op() == Some(op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn enter(&mut self) -> Result<(), FormulaError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("formula nests too deeply"));
        }
        Ok(())
    }

    fn ternary(&mut self) -> Result<Node, FormulaError> {
        self.enter()?;
        let cond = self.or()?;
        let node = if self.eat("?") {
            let a = self.ternary()?;
            if !self.eat(":") {
                return Err(self.error("expected ':'"));
            }
            let b = self.ternary()?;
            Node::Ternary(Box::new(cond), Box::new(a), Box::new(b))
        } else {
            cond
        };
        self.depth -= 1;
        Ok(node)
    }

    fn binary_level(
        &mut self,
        ops: &[(&str, Op)],
        next: fn(&mut Self) -> Result<Node, FormulaError>,
    ) -> Result<Node, FormulaError> {
        let mut left = next(self)?;
        'outer: loop {
            for (text, op) in ops {
                if self.eat(text) {
                    let right = next(self)?;
                    left = Node::Binary(*op, Box::new(left), Box::new(right));
                    continue 'outer;
                }
            }
            return Ok(left);
        }
    }

    fn or(&mut self) -> Result<Node, FormulaError> {
        self.binary_level(&[("||", Op::Or)], Self::and)
    }

    fn and(&mut self) -> Result<Node, FormulaError> {
        self.binary_level(&[("&&", Op::And)], Self::comparison)
    }

    fn comparison(&mut self) -> Result<Node, FormulaError> {
        self.binary_level(
            &[
                ("<=", Op::Le),
                (">=", Op::Ge),
                ("<", Op::Lt),
                (">", Op::Gt),
                ("==", Op::Eq),
                ("!=", Op::Ne),
            ],
            Self::additive,
        )
    }

    fn additive(&mut self) -> Result<Node, FormulaError> {
        self.binary_level(&[("+", Op::Add), ("-", Op::Sub)], Self::multiplicative)
    }

    fn multiplicative(&mut self) -> Result<Node, FormulaError> {
        self.binary_level(&[("*", Op::Mul), ("/", Op::Div)], Self::unary)
    }

    fn unary(&mut self) -> Result<Node, FormulaError> {
        self.enter()?;
        let node = if self.eat("-") {
            Node::Neg(Box::new(self.unary()?))
        } else if self.eat("+") {
            self.unary()?
        } else if self.eat("!") {
            Node::Not(Box::new(self.unary()?))
        } else {
            self.primary()?
        };
        self.depth -= 1;
        Ok(node)
    }

    fn primary(&mut self) -> Result<Node, FormulaError> {
        match self.tokens.get(self.pos).cloned() {
            Some((Token::Number(n), _)) => {
                self.pos += 1;
                Ok(Node::Number(n))
            }
            Some((Token::Ident(name), _)) => {
                self.pos += 1;
                Ok(Node::Var(name))
            }
            Some((Token::Op("("), _)) => {
                self.pos += 1;
                let inner = self.ternary()?;
                if !self.eat(")") {
                    return Err(self.error("expected ')'"));
                }
                Ok(inner)
            }
            Some(_) => Err(self.error("expected a number, a trigger name or '('")),
            None => Err(self.error("unexpected end of formula")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(formula: &str, expect: Result<f64, ()>) {
        let vars = |name: &str| match name {
            "trig_one" => Some(10.0),
            "trig_two" => Some(4.0),
            _ => None,
        };
        let got = Formula::parse(formula)
            .and_then(|f| f.eval(&vars))
            .map_err(|_| ());
        assert_eq!(got, expect, "{formula}");
    }

    #[test]
    fn evaluates_formulas() {
        check("trig_one + trig_two", Ok(14.0));
        check("(trig_one + trig_two) / 2", Ok(7.0));
        check("trig_one - trig_two * 2", Ok(2.0));
        check("-trig_two + 1", Ok(-3.0));
        check("trig_one > 5 ? trig_one : trig_two", Ok(10.0));
        check("trig_one < 5 ? trig_one : trig_two", Ok(4.0));
        check("trig_one >= 10 && trig_two != 4 ? 1 : 2", Ok(2.0));
        check("trig_one == 10 || x > 1 ? 1 : 2", Ok(1.0)); // short-circuit never reads x
        check("trig_one > 1 ? trig_two > 1 ? 3 : 4 : 5", Ok(3.0));
        check("trig_one-trig_two", Ok(6.0));
        check("1.5e2 + .5", Ok(150.5));
        check("!0", Ok(1.0));
        check("trig_one / 0", Err(()));
        check("unknown + 1", Err(()));
        check("trig_one +", Err(()));
        check("(trig_one", Err(()));
        check("trig_one ? 1", Err(()));
        check("1 2", Err(()));
        check("a $ b", Err(()));
        check("", Err(()));
    }

    #[test]
    fn rejects_deep_nesting_without_overflowing() {
        let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(Formula::parse(&deep).is_err());
        let minus = format!("{}1", "-".repeat(10_000));
        assert!(Formula::parse(&minus).is_err());
    }

    #[test]
    fn reports_the_column() {
        let err = Formula::parse("trig_one + * 2").unwrap_err();
        assert_eq!(
            err.to_string(),
            "formula \"trig_one + * 2\": expected a number, a trigger name or '(' at column 12"
        );
    }

    #[test]
    fn lists_variables() {
        let f = Formula::parse("b + a * b").unwrap();
        assert_eq!(f.variables(), vec!["a".to_owned(), "b".to_owned()]);
    }
}
