//! KEDA `scalingModifiers.formula`: the expression language of github.com/expr-lang/expr (v1.17.8, the
//! version KEDA's `go.mod` pins), for the part of it formulas use, compiled and run as KEDA does.
//!
//! What KEDA does with a formula (kedacore/keda 8b4f083c):
//! - admission (`apis/keda/v1alpha1/scaledobject_webhook.go`, `ValidateAndCompileScalingModifiers`):
//!   `castToFloatIfNecessary` rewrites the text to `float(<formula>)` unless it already starts with
//!   `float(`, and a formula holding `??` to `let _kedaCompositeResult = (<formula>);
//!   _kedaCompositeResult == nil ? nil : float(_kedaCompositeResult)`; it is compiled against an
//!   environment of `float64` variables, one per named trigger that is not `cpu` or `memory` (any other
//!   name is `unknown name`), and run once with every variable at `-1.0`, so a runtime error refuses it
//!   too ([`Formula::compile`]);
//! - each poll (`pkg/scaling/modifiers/formula.go`, `calculateScalingModifiersFormula`): the variables
//!   are the triggers' metric values (`AsApproximateFloat64` of the milli-quantity each scaler reported,
//!   see [`scaler_metric_value`]), or `nil` for a trigger past its failure threshold under the
//!   `scalingModifiers` fallback behaviour; a `nil` result takes `fallback.replicas * target`
//!   ([`nil_fallback_value`]); any other non-`float64` result is an error; the value is stored with
//!   `SetMilli(int64(out * 1000))`: truncated toward zero to a milli-unit, *not* clamped at 0, and a
//!   non-finite or out-of-range value becomes Go's amd64 conversion result, `math.MinInt64`
//!   ([`composite_milli`]);
//! - the composite metric's HPA target (`controllers/keda/hpa.go`) is `NewMilliQuantity(int64(target *
//!   1000))`, also truncated ([`composite_target_milli`]).
//!
//! The language, as expr types and runs it: integer literals are `int` (64-bit, wrapping on overflow
//! like Go), others `float64`; `+ - *` keep `int` for two ints and give `float64` otherwise; `/`, `**`
//! and `^` always give `float64` (`x / 0` is ±Inf or NaN, not an error); `%` takes ints only (a float is
//! a compile error, `% 0` a runtime error); `== !=` compare numbers across int and float; `< <= > >=`
//! take numbers; `&& || !` and `and or not` take booleans only (a number is not a condition); `c ? a : b`
//! needs a boolean `c`; `a ?? b` is `b` when `a` is nil; `x in [..]` and `x not in [..]`; arrays
//! `[a, b]`; `let x = e; body`; `(a; b)` sequences; builtins `float int abs ceil floor round min max
//! mean median len`
//! and the predicate builtins `count sum all any none one filter map` with `{ # > 1 }` closures.
//! Precedence and associativity are expr's (`parser/operator/operator.go`): `??` binds tightest, then
//! `**`/`^` (right-associative), unary `-`/`+`, `* / %`, unary `!`/`not`, `+ -`, comparisons and `in`
//! (chained comparisons `a < b < c` read as `a < b && b < c`), `&&`, `||`, then the ternary.
//! Errors are expr's texts with its `(line:column)` and source snippet.
//!
//! Not supported (refused at compile with a clear error, never ignored): strings, maps, member access and
//! indexing, ranges `..`, the pipe `|`, `if {} else {}`, `matches`/`contains`/`startsWith`/`endsWith`,
//! and builtins other than those above.

/// Why a formula could not be compiled or run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormulaError {
    /// expr refuses the text (syntax or types); the message carries expr's `(line:column)` and snippet.
    #[error("formula {formula:?}: {message}")]
    Compile {
        /// The formula as compiled (after KEDA's float cast).
        formula: String,
        /// expr's message with position.
        message: String,
    },
    /// Running the formula failed (e.g. `% 0`, a nil operand, a non-bool condition).
    #[error("error trying to run custom formula: {0}")]
    Runtime(String),
    /// The result is neither a float nor nil.
    #[error("formula returned non-float result {0}")]
    NotFloat(String),
    /// The result is nil and there is no fallback to take its place.
    #[error("scalingModifiers formula evaluated to nil but no fallback is configured")]
    Nil,
}

/// A compiled formula.
#[derive(Debug, Clone, PartialEq)]
pub struct Formula {
    /// The text as compiled (KEDA's `castToFloatIfNecessary` applied).
    pub compiled: String,
    root: Node,
}

/// A value of expr's at run time.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    Array(Vec<Value>),
}

/// A static type of expr's checker (its "nature"); `Unknown` is `interface{}`.
#[derive(Debug, Clone, PartialEq)]
enum Ty {
    Int,
    Float,
    Bool,
    Nil,
    Array(Box<Ty>),
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
struct Node {
    kind: Kind,
    /// Character offset in the compiled text, for messages.
    at: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    Ident(String),
    Pointer,
    Array(Vec<Node>),
    Unary(&'static str, Box<Node>),
    Binary(&'static str, Box<Node>, Box<Node>),
    Cond(Box<Node>, Box<Node>, Box<Node>),
    Let(String, Box<Node>, Box<Node>),
    Seq(Vec<Node>),
    Call(&'static str, Vec<Node>),
    Predicate(Box<Node>),
}

/// Nesting deeper than this is refused, so a hostile formula cannot exhaust the stack.
const MAX_DEPTH: usize = 100;

/// The builtins taking a predicate as their second argument, and whether it is optional.
const PREDICATE_BUILTINS: &[(&str, bool)] = &[
    ("all", false),
    ("none", false),
    ("any", false),
    ("one", false),
    ("filter", false),
    ("map", false),
    ("count", true),
    ("sum", true),
];
const PLAIN_BUILTINS: &[&str] = &[
    "float", "int", "abs", "ceil", "floor", "round", "min", "max", "mean", "median", "len",
];

/// expr's binary operators with precedence and right-associativity.
fn binary_op(op: &str) -> Option<(&'static str, u16, bool)> {
    Some(match op {
        "or" | "||" => ("||", 10, false),
        "and" | "&&" => ("&&", 15, false),
        "==" => ("==", 20, false),
        "!=" => ("!=", 20, false),
        "<" => ("<", 20, false),
        ">" => (">", 20, false),
        ">=" => (">=", 20, false),
        "<=" => ("<=", 20, false),
        "in" => ("in", 20, false),
        "+" => ("+", 30, false),
        "-" => ("-", 30, false),
        "*" => ("*", 60, false),
        "/" => ("/", 60, false),
        "%" => ("%", 60, false),
        "**" => ("**", 100, true),
        "^" => ("**", 100, true),
        "??" => ("??", 500, false),
        _ => return None,
    })
}

fn unary_op(op: &str) -> Option<(&'static str, u16)> {
    Some(match op {
        "not" | "!" => ("!", 50),
        "-" => ("-", 90),
        "+" => ("+", 90),
        _ => return None,
    })
}

/// KEDA's `castToFloatIfNecessary`.
pub fn cast_to_float_if_necessary(formula: &str) -> String {
    if formula.contains("??") {
        if formula.starts_with("let _kedaCompositeResult = ") {
            return formula.to_owned();
        }
        return format!(
            "let _kedaCompositeResult = ({formula}); _kedaCompositeResult == nil ? nil : float(_kedaCompositeResult)"
        );
    }
    if formula.starts_with("float(") {
        return formula.to_owned();
    }
    format!("float({formula})")
}

/// A scaler's reported value as the formula reads it: `GenerateMetricInMili` (NaN, ±Inf and negatives
/// are 0, else the value rounded to three decimals) then `AsApproximateFloat64`.
pub fn scaler_metric_value(value: f64) -> f64 {
    if !value.is_finite() || value < 0.0 {
        return 0.0;
    }
    format!("{value:.3}").parse().unwrap_or(0.0)
}

/// Go's `int64(f)` on amd64: truncation toward zero, and `math.MinInt64` for NaN, ±Inf and values
/// outside the int64 range (the hardware's "integer indefinite").
pub fn go_float_to_int64(f: f64) -> i64 {
    // 2^63 as f64; every finite f in [-2^63, 2^63) converts exactly after truncation.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if !(-LIMIT..LIMIT).contains(&f) {
        // NaN is in no range.
        i64::MIN
    } else {
        f as i64
    }
}

/// The composite metric's value in milli-units: `SetMilli(int64(out * 1000))`.
pub fn composite_milli(out: f64) -> i64 {
    go_float_to_int64(out * 1000.0)
}

/// The composite metric's HPA target in milli-units: `NewMilliQuantity(int64(target * 1000))`.
pub fn composite_target_milli(target: f64) -> i64 {
    go_float_to_int64(target * 1000.0)
}

/// The value a nil formula result takes: `fallback.replicas * target` (`scalingModifiersFallbackTarget`),
/// or [`FormulaError::Nil`] without a fallback.
pub fn nil_fallback_value(
    fallback_replicas: Option<i32>,
    target: f64,
) -> Result<f64, FormulaError> {
    let replicas = fallback_replicas.ok_or(FormulaError::Nil)?;
    Ok(f64::from(replicas) * target)
}

/// Why KEDA's admission refuses a `scalingModifiers` block (`ValidateAndCompileScalingModifiers`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScalingModifiersError {
    /// `formula` is empty.
    #[error("error ScalingModifiers.Formula is mandatory")]
    FormulaMandatory,
    /// A formula without a target.
    #[error("error validating formula in ScalingModifiers: formula is given but target is empty")]
    TargetEmpty,
    /// The formula does not compile or run.
    #[error("error validating formula in ScalingModifiers")]
    Formula(#[source] FormulaError),
    /// `target` is not a number above 0.
    #[error("error validating target in ScalingModifiers: {0:?} is not a valid target above 0")]
    Target(String),
    /// `metricType: Utilization`.
    #[error(
        "error validating target in ScalingModifiers: error trigger type is Utilization, but it needs to be AverageValue or Value for external metrics"
    )]
    Utilization,
}

/// KEDA's admission of `scalingModifiers`: `triggers` are the names of the named triggers that are not
/// `cpu` or `memory` (KEDA leaves those out of the formula's environment).
pub fn validate_scaling_modifiers(
    formula: &str,
    target: &str,
    utilization: bool,
    triggers: &[&str],
) -> Result<Formula, ScalingModifiersError> {
    if formula.is_empty() {
        return Err(ScalingModifiersError::FormulaMandatory);
    }
    if target.is_empty() {
        return Err(ScalingModifiersError::TargetEmpty);
    }
    let compiled = Formula::compile(formula, triggers).map_err(ScalingModifiersError::Formula)?;
    match target.parse::<f64>() {
        Ok(t) if t > 0.0 => {}
        _ => return Err(ScalingModifiersError::Target(target.to_owned())),
    }
    if utilization {
        return Err(ScalingModifiersError::Utilization);
    }
    Ok(compiled)
}

/// The value a trigger contributes to the formula (`scalingModifierTriggerValue`): nil once its
/// consecutive failures exceed `failureThreshold` (strictly) under `fallback.behavior:
/// scalingModifiers`, else its metric value.
pub fn scaling_modifier_trigger_value(
    value: f64,
    modifiers_fallback_threshold: Option<i32>,
    failures: Option<i32>,
) -> Option<f64> {
    match (modifiers_fallback_threshold, failures) {
        (Some(threshold), Some(n)) if n > threshold => None,
        _ => Some(value),
    }
}

impl Formula {
    /// Compiles as KEDA's admission does: the float cast, the checker against `triggers` as `float64`
    /// variables, then one run with every trigger at `-1.0`.
    pub fn compile(formula: &str, triggers: &[&str]) -> Result<Self, FormulaError> {
        let compiled = cast_to_float_if_necessary(formula);
        Self::compile_exact(&compiled, triggers)
    }

    /// Compiles `text` as written (no float cast): what `expr.Compile(text, expr.Env(triggers))` does.
    pub fn compile_exact(text: &str, triggers: &[&str]) -> Result<Self, FormulaError> {
        let compile_error = |e: Located| FormulaError::Compile {
            formula: text.to_owned(),
            message: e.render(text),
        };
        let tokens = lex(text).map_err(compile_error)?;
        let mut parser = Parser {
            tokens,
            pos: 0,
            depth: 0,
            predicate_depth: 0,
        };
        let root = parser.sequence().map_err(compile_error)?;
        if parser.peek().kind != Tok::Eof {
            return Err(compile_error(parser.unexpected()));
        }
        let env: Vec<String> = triggers.iter().map(|t| (*t).to_owned()).collect();
        let mut checker = Checker {
            env: &env,
            scopes: Vec::new(),
            pointers: Vec::new(),
        };
        checker.check(&root).map_err(compile_error)?;
        let formula = Self {
            compiled: text.to_owned(),
            root,
        };
        // KEDA runs the program once with dummy values; a runtime error refuses the formula.
        formula.run(&|_| Some(-1.0))?;
        Ok(formula)
    }

    /// Runs the formula with each trigger's value (`None` is nil: a trigger in fallback, or absent from
    /// KEDA's data map). `Ok(None)` is a nil result; a result that is not a float is an error.
    pub fn evaluate(
        &self,
        value: &dyn Fn(&str) -> Option<f64>,
    ) -> Result<Option<f64>, FormulaError> {
        match self.run(value)? {
            Value::Float(f) => Ok(Some(f)),
            Value::Nil => Ok(None),
            other => Err(FormulaError::NotFloat(go_describe(&other))),
        }
    }

    fn run(&self, value: &dyn Fn(&str) -> Option<f64>) -> Result<Value, FormulaError> {
        let mut vm = Vm {
            env: value,
            scopes: Vec::new(),
            pointers: Vec::new(),
        };
        vm.eval(&self.root)
            .map_err(|e| FormulaError::Runtime(e.render(&self.compiled)))
    }
}

/// An error at a character offset, rendered as expr's `file.Error` is.
#[derive(Debug)]
struct Located {
    message: String,
    at: usize,
}

impl Located {
    fn new(message: impl Into<String>, at: usize) -> Self {
        Self {
            message: message.into(),
            at,
        }
    }

    /// `message (line:column)\n | source line\n | ...^` as `file.Error.Bind` and `format` build it.
    fn render(&self, source: &str) -> String {
        let mut line = 1;
        let mut column = 0;
        let mut line_start = 0;
        for (count, (i, c)) in source.char_indices().enumerate() {
            if count == self.at {
                break;
            }
            if c == '\n' {
                line_start = i + 1;
                line += 1;
                column = 0;
            } else {
                column += 1;
            }
        }
        let rest = &source[line_start..];
        let text = rest.split('\n').next().unwrap_or("");
        if text.is_empty() {
            return self.message.clone();
        }
        format!(
            "{} ({line}:{})\n | {}\n | {}^",
            self.message,
            column + 1,
            text.replace('\t', " "),
            ".".repeat(column)
        )
    }
}

// ---------------------------------------------------------------------------------------------------
// Lexer (expr's parser/lexer/state.go)

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Number(String),
    Ident(String),
    Op(String),
    Bracket(char),
    Str(String),
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Tok,
    at: usize,
}

impl Token {
    /// expr's `Token.String()`: `Kind("value")`.
    fn describe(&self) -> String {
        match &self.kind {
            Tok::Number(v) => format!("Number({v:?})"),
            Tok::Ident(v) => format!("Identifier({v:?})"),
            Tok::Op(v) => format!("Operator({v:?})"),
            Tok::Bracket(c) => format!("Bracket(\"{c}\")"),
            Tok::Str(v) => format!("String({v:?})"),
            Tok::Eof => "EOF".to_owned(),
        }
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(&self.kind, Tok::Op(o) if o == op)
    }
}

fn is_alnum(c: char) -> bool {
    c == '_' || c == '$' || c.is_alphanumeric()
}

fn lex(text: &str) -> Result<Vec<Token>, Located> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied();
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let push = |out: &mut Vec<Token>, kind: Tok| out.push(Token { kind, at: start });
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || (c == '.' && at(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            i = scan_number(&chars, i).map_err(|end| {
                let word: String = chars[start..end].iter().collect();
                Located::new(format!("bad number syntax: {word:?}"), start)
            })?;
            push(&mut out, Tok::Number(chars[start..i].iter().collect()));
        } else if c == '\'' || c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            if i >= chars.len() {
                return Err(Located::new("literal not terminated", start));
            }
            i += 1;
            push(&mut out, Tok::Str(chars[start + 1..i - 1].iter().collect()));
        } else if c == '/' && at(i + 1) == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == Some('*') {
            let end = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == '*' && chars[j + 1] == '/')
                .ok_or_else(|| Located::new("unclosed comment", start))?;
            i = end + 2;
        } else if "([{)]}".contains(c) {
            i += 1;
            push(&mut out, Tok::Bracket(c));
        } else if is_alnum(c) {
            while i < chars.len() && is_alnum(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let kind = match word.as_str() {
                "not" | "in" | "or" | "and" | "matches" | "contains" | "startsWith"
                | "endsWith" | "let" | "if" | "else" => Tok::Op(word),
                _ => Tok::Ident(word),
            };
            push(&mut out, kind);
        } else {
            // Operators: one rune, or two where expr's lexer accepts a second.
            let second = at(i + 1);
            let len = match (c, second) {
                ('?', Some('?' | '.')) | ('|', Some('|')) | (':', Some(':')) | ('.', Some('.')) => {
                    2
                }
                ('&' | '!' | '=' | '*' | '<' | '>', Some('&' | '=' | '*')) => 2,
                (_, _) if ",;%+-^?/#|:&!=*<>.".contains(c) => 1,
                _ => {
                    return Err(Located::new(
                        format!("unrecognized character: U+{:04X} '{c}'", c as u32),
                        start,
                    ));
                }
            };
            i += len;
            push(&mut out, Tok::Op(chars[start..i].iter().collect()));
        }
    }
    out.push(Token {
        kind: Tok::Eof,
        at: chars.len(),
    });
    Ok(out)
}

/// expr's `scanNumber`; returns the end, or (as `Err`) the end of the word expr reports when a letter
/// follows the number (the number and that one letter).
fn scan_number(chars: &[char], mut i: usize) -> Result<usize, usize> {
    let accept_run = |i: &mut usize, digits: &str| {
        while *i < chars.len() && digits.contains(chars[*i]) {
            *i += 1;
        }
    };
    let mut digits = "0123456789_";
    if chars.get(i) == Some(&'0') {
        i += 1;
        match chars.get(i) {
            Some('x' | 'X') => {
                digits = "0123456789abcdefABCDEF_";
                i += 1;
            }
            Some('o' | 'O') => {
                digits = "01234567_";
                i += 1;
            }
            Some('b' | 'B') => {
                digits = "01_";
                i += 1;
            }
            _ => {}
        }
    }
    accept_run(&mut i, digits);
    if chars.get(i) == Some(&'.') {
        if chars.get(i + 1) == Some(&'.') {
            return Ok(i);
        }
        i += 1;
        accept_run(&mut i, digits);
    }
    if matches!(chars.get(i), Some('e' | 'E')) {
        i += 1;
        if matches!(chars.get(i), Some('+' | '-')) {
            i += 1;
        }
        accept_run(&mut i, digits);
    }
    match chars.get(i) {
        Some(&c) if is_alnum(c) => Err(i + 1),
        _ => Ok(i),
    }
}

// ---------------------------------------------------------------------------------------------------
// Parser (expr's parser/parser.go)

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
    predicate_depth: usize,
}

type Parsed = Result<Node, Located>;

impl Parser {
    fn peek(&self) -> &Token {
        // The token list always ends with Eof, and `next` never moves past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) {
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
    }

    fn unexpected(&self) -> Located {
        let t = self.peek();
        Located::new(format!("unexpected token {}", t.describe()), t.at)
    }

    fn expect_op(&mut self, op: &str) -> Result<(), Located> {
        if self.peek().is_op(op) {
            self.next();
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn expect_bracket(&mut self, b: char) -> Result<(), Located> {
        if self.peek().kind == Tok::Bracket(b) {
            self.next();
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn enter(&mut self) -> Result<(), Located> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Located::new("formula nests too deeply", self.peek().at));
        }
        Ok(())
    }

    /// `a; b; c` (expr's `parseSequenceExpression`).
    fn sequence(&mut self) -> Parsed {
        let first = self.expression(0)?;
        if !self.peek().is_op(";") {
            return Ok(first);
        }
        let at = first.at;
        let mut nodes = vec![first];
        while self.peek().is_op(";") {
            self.next();
            nodes.push(self.expression(0)?);
        }
        Ok(Node {
            kind: Kind::Seq(nodes),
            at,
        })
    }

    fn expression(&mut self, precedence: u16) -> Parsed {
        self.enter()?;
        let node = self.expression_inner(precedence);
        self.depth -= 1;
        node
    }

    fn expression_inner(&mut self, precedence: u16) -> Parsed {
        if precedence == 0 && self.peek().is_op("let") {
            return self.let_declaration();
        }
        if precedence == 0 && self.peek().is_op("if") {
            return Err(Located::new(
                "if/else blocks are not supported by surge (use c ? a : b)",
                self.peek().at,
            ));
        }
        let mut left = self.primary()?;
        let mut previous = "";
        loop {
            let token = self.peek().clone();
            let Tok::Op(text) = &token.kind else { break };
            let mut negate = false;
            let mut op_text = text.clone();
            if text == "not" {
                // Only `not in` continues an expression here.
                let next = self.tokens.get(self.pos + 1).cloned();
                match next {
                    Some(t) if t.is_op("in") => {
                        if 20 < precedence {
                            break;
                        }
                        negate = true;
                        self.next();
                        op_text = "in".to_owned();
                    }
                    Some(t) => {
                        return Err(Located::new(
                            format!("unexpected token {}", t.describe()),
                            t.at,
                        ));
                    }
                    None => break,
                }
            }
            let op_at = self.peek().at;
            let Some((op, p, right_assoc)) = binary_op(&op_text) else {
                if matches!(
                    op_text.as_str(),
                    "matches" | "contains" | "startsWith" | "endsWith" | ".." | "|"
                ) {
                    return Err(Located::new(
                        format!("operator {op_text:?} is not supported by surge"),
                        op_at,
                    ));
                }
                break;
            };
            if p < precedence {
                break;
            }
            self.next();
            if previous == "??" && op != "??" {
                return Err(Located::new(
                    format!(
                        "Operator ({op_text}) and coalesce expressions (??) cannot be mixed. Wrap either by parentheses."
                    ),
                    op_at,
                ));
            }
            if matches!(op, "<" | ">" | "<=" | ">=") {
                left = self.comparison(left, op, op_at, p)?;
            } else {
                let right = self.expression(if right_assoc { p } else { p + 1 })?;
                left = Node {
                    kind: Kind::Binary(op, Box::new(left), Box::new(right)),
                    at: op_at,
                };
                if negate {
                    left = Node {
                        kind: Kind::Unary("!", Box::new(left)),
                        at: token.at,
                    };
                }
            }
            previous = op;
        }
        if precedence == 0 {
            left = self.conditional(left)?;
        }
        Ok(left)
    }

    /// `a < b < c` is `a < b && b < c` (expr's `parseComparison`).
    fn comparison(
        &mut self,
        mut left: Node,
        mut op: &'static str,
        mut at: usize,
        p: u16,
    ) -> Parsed {
        let mut root: Option<Node> = None;
        loop {
            let right = self.expression(p + 1)?;
            let cmp = Node {
                kind: Kind::Binary(op, Box::new(left), Box::new(right.clone())),
                at,
            };
            root = Some(match root {
                None => cmp,
                Some(r) => Node {
                    kind: Kind::Binary("&&", Box::new(r), Box::new(cmp)),
                    at,
                },
            });
            left = right;
            let next = self.peek().clone();
            match &next.kind {
                Tok::Op(o) if matches!(o.as_str(), "<" | ">" | "<=" | ">=") => {
                    op = binary_op(o).map_or("<", |b| b.0);
                    at = next.at;
                    self.next();
                }
                _ => break,
            }
        }
        root.ok_or_else(|| Located::new("expected a comparison", at))
    }

    fn conditional(&mut self, mut node: Node) -> Parsed {
        while self.peek().is_op("?") {
            self.next();
            let (a, b) = if self.peek().is_op(":") {
                // `c ?: b` is `c ? c : b`.
                self.next();
                (node.clone(), self.expression(0)?)
            } else {
                let a = self.expression(0)?;
                self.expect_op(":")?;
                (a, self.expression(0)?)
            };
            node = Node {
                at: self.peek().at,
                kind: Kind::Cond(Box::new(node), Box::new(a), Box::new(b)),
            };
        }
        Ok(node)
    }

    fn let_declaration(&mut self) -> Parsed {
        self.expect_op("let")?;
        let name_token = self.peek().clone();
        let Tok::Ident(name) = name_token.kind else {
            return Err(self.unexpected());
        };
        self.next();
        self.expect_op("=")?;
        let value = self.expression(0)?;
        self.expect_op(";")?;
        let body = self.sequence()?;
        Ok(Node {
            kind: Kind::Let(name, Box::new(value), Box::new(body)),
            at: name_token.at,
        })
    }

    fn primary(&mut self) -> Parsed {
        let token = self.peek().clone();
        if let Tok::Op(text) = &token.kind {
            if let Some((op, p)) = unary_op(text) {
                self.next();
                let operand = self.expression(p)?;
                return self.postfix(Node {
                    kind: Kind::Unary(op, Box::new(operand)),
                    at: token.at,
                });
            }
            if text == "#" && self.predicate_depth > 0 {
                self.next();
                if let Tok::Ident(_) = self.peek().kind {
                    return Err(Located::new(
                        "named pointers (#index, #acc) are not supported by surge",
                        token.at,
                    ));
                }
                return self.postfix(Node {
                    kind: Kind::Pointer,
                    at: token.at,
                });
            }
        }
        if token.kind == Tok::Bracket('(') {
            self.next();
            let inner = self.sequence()?;
            self.expect_bracket(')')?;
            return self.postfix(inner);
        }
        self.secondary()
    }

    fn secondary(&mut self) -> Parsed {
        let token = self.peek().clone();
        let node = match &token.kind {
            Tok::Ident(name) => {
                self.next();
                match name.as_str() {
                    "true" => Kind::Bool(true),
                    "false" => Kind::Bool(false),
                    "nil" => Kind::Nil,
                    _ if self.peek().kind == Tok::Bracket('(') => {
                        return self.call(name, token.at).and_then(|n| self.postfix(n));
                    }
                    _ => Kind::Ident(name.clone()),
                }
            }
            Tok::Number(text) => {
                self.next();
                return Ok(Node {
                    kind: number_literal(text).map_err(|m| Located::new(m, token.at))?,
                    at: token.at,
                });
            }
            Tok::Str(_) => {
                return Err(Located::new(
                    "string values are not supported by surge",
                    token.at,
                ));
            }
            Tok::Bracket('[') => {
                self.next();
                let mut items = Vec::new();
                while self.peek().kind != Tok::Bracket(']') {
                    if !items.is_empty() {
                        self.expect_op(",")?;
                        if self.peek().kind == Tok::Bracket(']') {
                            break;
                        }
                    }
                    items.push(self.expression(0)?);
                }
                self.expect_bracket(']')?;
                Kind::Array(items)
            }
            Tok::Bracket('{') => {
                return Err(Located::new("maps are not supported by surge", token.at));
            }
            _ => return Err(self.unexpected()),
        };
        self.postfix(Node {
            kind: node,
            at: token.at,
        })
    }

    fn postfix(&mut self, node: Node) -> Parsed {
        let t = self.peek();
        if t.kind == Tok::Bracket('[') || t.is_op(".") || t.is_op("?.") {
            return Err(Located::new(
                "member access and indexing are not supported by surge",
                t.at,
            ));
        }
        Ok(node)
    }

    fn call(&mut self, name: &str, at: usize) -> Parsed {
        if let Some(&(builtin, optional)) = PREDICATE_BUILTINS.iter().find(|(n, _)| *n == name) {
            self.expect_bracket('(')?;
            if self.peek().kind == Tok::Bracket(')') {
                return Err(Located::new(
                    "expected at least 2 arguments",
                    self.peek().at,
                ));
            }
            let mut args = vec![self.expression(0)?];
            if !(optional && self.peek().kind == Tok::Bracket(')')) {
                self.expect_op(",")?;
                if self.peek().kind == Tok::Bracket(')') && !optional {
                    return Err(Located::new(
                        "expected at least 2 arguments",
                        self.peek().at,
                    ));
                }
                args.push(self.predicate()?);
            }
            if self.peek().is_op(",") {
                self.next();
            }
            self.expect_bracket(')')?;
            return Ok(Node {
                kind: Kind::Call(builtin, args),
                at,
            });
        }
        let Some(builtin) = PLAIN_BUILTINS.iter().find(|n| **n == name) else {
            return Err(Located::new(format!("unknown name {name}"), at));
        };
        self.expect_bracket('(')?;
        let mut args = Vec::new();
        while self.peek().kind != Tok::Bracket(')') {
            if !args.is_empty() {
                self.expect_op(",")?;
                if self.peek().kind == Tok::Bracket(')') {
                    break;
                }
            }
            args.push(self.expression(0)?);
        }
        self.expect_bracket(')')?;
        Ok(Node {
            kind: Kind::Call(builtin, args),
            at,
        })
    }

    fn predicate(&mut self) -> Parsed {
        let at = self.peek().at;
        let braces = self.peek().kind == Tok::Bracket('{');
        if braces {
            self.next();
        }
        self.predicate_depth += 1;
        let body = if braces {
            self.sequence()
        } else {
            self.expression(0)
        };
        self.predicate_depth -= 1;
        let body = body?;
        if braces {
            self.expect_bracket('}')?;
        }
        Ok(Node {
            kind: Kind::Predicate(Box::new(body)),
            at,
        })
    }
}

/// expr's number literal rules: hex, octal, binary, floats with `.` or `e`, else decimal int.
fn number_literal(text: &str) -> Result<Kind, String> {
    let value = text.replace('_', "");
    let lower = value.to_ascii_lowercase();
    let radix = |prefix: &str, radix: u32, what: &str| {
        i64::from_str_radix(&lower[prefix.len()..], radix)
            .map(Kind::Int)
            .map_err(|_| {
                format!(
                    "invalid {what} literal: strconv.ParseInt: parsing {value:?}: invalid syntax"
                )
            })
    };
    if lower.starts_with("0x") {
        radix("0x", 16, "hex")
    } else if lower.contains('.') || lower.contains('e') {
        value.parse::<f64>().map(Kind::Float).map_err(|_| {
            format!("invalid float literal: strconv.ParseFloat: parsing {value:?}: invalid syntax")
        })
    } else if lower.starts_with("0b") {
        radix("0b", 2, "binary")
    } else if lower.starts_with("0o") {
        radix("0o", 8, "octal")
    } else {
        value.parse::<i64>().map(Kind::Int).map_err(|_| {
            format!(
                "invalid integer literal: strconv.ParseInt: parsing {value:?}: value out of range"
            )
        })
    }
}

// ---------------------------------------------------------------------------------------------------
// Checker (expr's checker/checker.go, for the supported nodes)

struct Checker<'a> {
    env: &'a [String],
    scopes: Vec<(String, Ty)>,
    pointers: Vec<Ty>,
}

impl Ty {
    fn is_number(&self) -> bool {
        matches!(self, Ty::Int | Ty::Float)
    }

    /// Go's type names, as expr's messages print them.
    fn name(&self) -> String {
        match self {
            Ty::Int => "int".to_owned(),
            Ty::Float => "float64".to_owned(),
            Ty::Bool => "bool".to_owned(),
            Ty::Nil => "nil".to_owned(),
            Ty::Array(e) => format!("[]{}", e.name()),
            Ty::Unknown => "interface {}".to_owned(),
        }
    }

    fn element(&self) -> Ty {
        match self {
            Ty::Array(e) => (**e).clone(),
            _ => Ty::Unknown,
        }
    }
}

/// Nature.MaybeCompatible: one side unknown and the other passing `check`, or both unknown.
fn maybe(l: &Ty, r: &Ty, check: fn(&Ty) -> bool) -> bool {
    let (lu, ru) = (*l == Ty::Unknown, *r == Ty::Unknown);
    (lu && (ru || check(r))) || (ru && check(l))
}

fn comparable(l: &Ty, r: &Ty) -> bool {
    *l == Ty::Unknown
        || *r == Ty::Unknown
        || *l == Ty::Nil
        || *r == Ty::Nil
        || (l.is_number() && r.is_number())
        || (matches!(l, Ty::Array(_)) && matches!(r, Ty::Array(_)))
        || l == r
}

impl Checker<'_> {
    fn check(&mut self, node: &Node) -> Result<Ty, Located> {
        let err = |m: String| Located::new(m, node.at);
        Ok(match &node.kind {
            Kind::Int(_) => Ty::Int,
            Kind::Float(_) => Ty::Float,
            Kind::Bool(_) => Ty::Bool,
            Kind::Nil => Ty::Nil,
            Kind::Ident(name) => {
                if let Some((_, ty)) = self.scopes.iter().rev().find(|(n, _)| n == name) {
                    ty.clone()
                } else if self.env.contains(name) {
                    Ty::Float
                } else {
                    return Err(err(format!("unknown name {name}")));
                }
            }
            Kind::Pointer => self.pointers.last().cloned().unwrap_or(Ty::Unknown),
            Kind::Array(items) => {
                let mut elem: Option<Ty> = None;
                for item in items {
                    let t = self.check(item)?;
                    elem = Some(match elem {
                        None => t,
                        Some(e) if e == t => e,
                        Some(_) => Ty::Unknown,
                    });
                }
                Ty::Array(Box::new(elem.unwrap_or(Ty::Unknown)))
            }
            Kind::Seq(items) => {
                let mut last = Ty::Unknown;
                for item in items {
                    last = self.check(item)?;
                }
                last
            }
            Kind::Let(name, value, body) => {
                let t = self.check(value)?;
                self.scopes.push((name.clone(), t));
                let body = self.check(body);
                self.scopes.pop();
                body?
            }
            Kind::Unary(op, a) => {
                let t = self.check(a)?;
                match *op {
                    "!" if t == Ty::Bool || t == Ty::Unknown => Ty::Bool,
                    "-" | "+" if t.is_number() => t,
                    "-" | "+" if t == Ty::Unknown => Ty::Unknown,
                    _ => {
                        let shown = if *op == "!" { "!" } else { op };
                        return Err(err(format!(
                            "invalid operation: {shown} (mismatched type {})",
                            t.name()
                        )));
                    }
                }
            }
            Kind::Binary(op, a, b) => {
                let l = self.check(a)?;
                let r = self.check(b)?;
                self.binary(op, &l, &r).ok_or_else(|| {
                    err(format!(
                        "invalid operation: {op} (mismatched types {} and {})",
                        l.name(),
                        r.name()
                    ))
                })?
            }
            Kind::Cond(c, a, b) => {
                let ct = self.check(c)?;
                if ct != Ty::Bool && ct != Ty::Unknown {
                    return Err(Located::new(
                        format!("non-bool expression (type {}) used as condition", ct.name()),
                        c.at,
                    ));
                }
                let t1 = self.check(a)?;
                let t2 = self.check(b)?;
                match (t1, t2) {
                    (Ty::Nil, t) | (t, Ty::Nil) => t,
                    (t1, t2) if t1 == t2 => t1,
                    _ => Ty::Unknown,
                }
            }
            Kind::Call(name, args) => self.call(name, args, node.at)?,
            Kind::Predicate(body) => self.check(body)?,
        })
    }

    fn binary(&self, op: &str, l: &Ty, r: &Ty) -> Option<Ty> {
        let number = |t: &Ty| t.is_number();
        let boolean = |t: &Ty| *t == Ty::Bool;
        let integer = |t: &Ty| *t == Ty::Int;
        let promote = |l: &Ty, r: &Ty| {
            if *l == Ty::Int && *r == Ty::Int {
                Ty::Int
            } else {
                Ty::Float
            }
        };
        match op {
            "==" | "!=" => comparable(l, r).then_some(Ty::Bool),
            "&&" | "||" => {
                (l == &Ty::Bool && r == &Ty::Bool || maybe(l, r, boolean)).then_some(Ty::Bool)
            }
            "<" | ">" | "<=" | ">=" => {
                (l.is_number() && r.is_number() || maybe(l, r, number)).then_some(Ty::Bool)
            }
            "+" | "-" | "*" => {
                if l.is_number() && r.is_number() {
                    Some(promote(l, r))
                } else {
                    maybe(l, r, number).then_some(Ty::Unknown)
                }
            }
            "/" | "**" => {
                (l.is_number() && r.is_number() || maybe(l, r, number)).then_some(Ty::Float)
            }
            "%" => (l == &Ty::Int && r == &Ty::Int || maybe(l, r, integer)).then_some(Ty::Int),
            "in" => match r {
                Ty::Array(e) => comparable(l, e).then_some(Ty::Bool),
                Ty::Unknown => Some(Ty::Bool),
                _ => None,
            },
            "??" => Some(match (l, r) {
                (Ty::Nil, r) => r.clone(),
                (l, Ty::Nil) => l.clone(),
                (l, r) if l == r => l.clone(),
                _ => Ty::Unknown,
            }),
            _ => None,
        }
    }

    fn call(&mut self, name: &str, args: &[Node], at: usize) -> Result<Ty, Located> {
        let err = |m: String| Located::new(m, at);
        if PREDICATE_BUILTINS.iter().any(|(n, _)| *n == name) {
            let collection = self.check(&args[0])?;
            if !matches!(collection, Ty::Array(_) | Ty::Unknown) {
                return Err(err(format!(
                    "builtin {name} takes only array (got {})",
                    collection.name()
                )));
            }
            let mut result = Ty::Unknown;
            if let Some(predicate) = args.get(1) {
                self.pointers.push(collection.element());
                let t = self.check(predicate);
                self.pointers.pop();
                result = t?;
                if !matches!(name, "map" | "sum") && result != Ty::Bool && result != Ty::Unknown {
                    return Err(err(format!(
                        "predicate should return boolean (got {})",
                        result.name()
                    )));
                }
            }
            return Ok(match name {
                "count" => Ty::Int,
                "all" | "none" | "any" | "one" => Ty::Bool,
                "filter" => collection,
                "map" => Ty::Array(Box::new(result)),
                _ => Ty::Unknown,
            });
        }
        let mut types = Vec::new();
        for a in args {
            types.push(self.check(a)?);
        }
        let one = || {
            if types.len() == 1 {
                Ok(types[0].clone())
            } else {
                Err(err(format!(
                    "invalid number of arguments (expected 1, got {})",
                    types.len()
                )))
            }
        };
        let numeric = |t: &Ty| t.is_number() || *t == Ty::Unknown;
        match name {
            "float" | "int" => {
                let t = one()?;
                if !numeric(&t) {
                    return Err(err(format!(
                        "invalid argument for {name} (type {})",
                        t.name()
                    )));
                }
                Ok(if name == "float" { Ty::Float } else { Ty::Int })
            }
            "abs" => {
                let t = one()?;
                if !numeric(&t) {
                    return Err(err(format!("invalid argument for abs (type {})", t.name())));
                }
                Ok(t)
            }
            "ceil" | "floor" | "round" => {
                let t = one()?;
                if !numeric(&t) {
                    return Err(err(format!(
                        "invalid argument for {name} (type {})",
                        t.name()
                    )));
                }
                Ok(Ty::Float)
            }
            "len" => {
                let t = one()?;
                if !matches!(t, Ty::Array(_) | Ty::Unknown) {
                    return Err(err(format!("invalid argument for len (type {})", t.name())));
                }
                Ok(Ty::Int)
            }
            _ => {
                // min, max, mean, median: validateAggregateFunc (whose type is the first argument's
                // even where the run returns a float, as expr's is).
                if types.is_empty() {
                    return Err(err(format!("not enough arguments to call {name}")));
                }
                for t in &types {
                    match t {
                        Ty::Unknown | Ty::Array(_) => return Ok(Ty::Unknown),
                        Ty::Int | Ty::Float => {}
                        other => {
                            return Err(err(format!(
                                "invalid argument for {name} (type {})",
                                other.name()
                            )));
                        }
                    }
                }
                Ok(types[0].clone())
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Evaluation (expr's vm/runtime and builtin/lib.go)

struct Vm<'a> {
    env: &'a dyn Fn(&str) -> Option<f64>,
    scopes: Vec<(String, Value)>,
    pointers: Vec<Value>,
}

/// Go's `%T` of a value.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Int(_) => "int",
        Value::Float(_) => "float64",
        Value::Bool(_) => "bool",
        Value::Nil => "<nil>",
        Value::Array(_) => "[]interface {}",
    }
}

/// `%T (%v)` of a value, as KEDA's non-float error prints it.
fn go_describe(v: &Value) -> String {
    format!("{} ({})", go_type(v), go_value(v))
}

fn go_value(v: &Value) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Nil => "<nil>".to_owned(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(go_value).collect();
            format!("[{}]", parts.join(" "))
        }
    }
}

fn to_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

/// runtime.Equal: numbers across int and float, else same-kind equality (arrays element by element
/// with Go's DeepEqual, where an int never equals a float).
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            to_f64(a) == to_f64(b)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| deep_equal(p, q))
        }
        _ => a == b,
    }
}

fn deep_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| deep_equal(p, q))
        }
        _ => a == b,
    }
}

impl Vm<'_> {
    fn eval(&mut self, node: &Node) -> Result<Value, Located> {
        let err = |m: String| Located::new(m, node.at);
        Ok(match &node.kind {
            Kind::Int(i) => Value::Int(*i),
            Kind::Float(f) => Value::Float(*f),
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Nil => Value::Nil,
            Kind::Ident(name) => {
                if let Some((_, v)) = self.scopes.iter().rev().find(|(n, _)| n == name) {
                    v.clone()
                } else {
                    (self.env)(name).map_or(Value::Nil, Value::Float)
                }
            }
            Kind::Pointer => self.pointers.last().cloned().unwrap_or(Value::Nil),
            Kind::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(self.eval(item)?);
                }
                Value::Array(out)
            }
            Kind::Seq(items) => {
                let mut last = Value::Nil;
                for item in items {
                    last = self.eval(item)?;
                }
                last
            }
            Kind::Let(name, value, body) => {
                let v = self.eval(value)?;
                self.scopes.push((name.clone(), v));
                let out = self.eval(body);
                self.scopes.pop();
                out?
            }
            Kind::Unary(op, a) => {
                let v = self.eval(a)?;
                match (*op, v) {
                    ("!", Value::Bool(b)) => Value::Bool(!b),
                    ("-", Value::Int(i)) => Value::Int(i.wrapping_neg()),
                    ("-", Value::Float(f)) => Value::Float(-f),
                    ("+", v @ (Value::Int(_) | Value::Float(_))) => v,
                    (op, v) => {
                        return Err(err(format!("invalid operation: {op}{}", go_type(&v))));
                    }
                }
            }
            Kind::Binary(op, a, b) => self.binary(op, a, b, node.at)?,
            Kind::Cond(c, a, b) => match self.eval(c)? {
                Value::Bool(true) => self.eval(a)?,
                Value::Bool(false) => self.eval(b)?,
                other => {
                    return Err(Located::new(
                        format!("non-bool value {} used as condition", go_describe(&other)),
                        c.at,
                    ));
                }
            },
            Kind::Call(name, args) => self.call(name, args, node.at)?,
            Kind::Predicate(body) => self.eval(body)?,
        })
    }

    fn binary(&mut self, op: &str, a: &Node, b: &Node, at: usize) -> Result<Value, Located> {
        let err = |m: String| Located::new(m, at);
        let l = self.eval(a)?;
        // Short circuits.
        match op {
            "&&" | "||" => {
                let Value::Bool(x) = l else {
                    return Err(err(format!("invalid operation: {} {op} bool", go_type(&l))));
                };
                if (op == "&&" && !x) || (op == "||" && x) {
                    return Ok(Value::Bool(x));
                }
                let r = self.eval(b)?;
                return match r {
                    Value::Bool(y) => Ok(Value::Bool(y)),
                    other => Err(err(format!(
                        "invalid operation: bool {op} {}",
                        go_type(&other)
                    ))),
                };
            }
            "??" => {
                return if l == Value::Nil { self.eval(b) } else { Ok(l) };
            }
            _ => {}
        }
        let r = self.eval(b)?;
        let mismatch = || {
            err(format!(
                "invalid operation: {} {op} {}",
                go_type(&l),
                go_type(&r)
            ))
        };
        Ok(match op {
            "==" => Value::Bool(equal(&l, &r)),
            "!=" => Value::Bool(!equal(&l, &r)),
            "<" | ">" | "<=" | ">=" => {
                let (Some(x), Some(y)) = (to_f64(&l), to_f64(&r)) else {
                    return Err(mismatch());
                };
                // Two ints compare as ints (exact beyond 2^53).
                let ord = match (&l, &r) {
                    (Value::Int(p), Value::Int(q)) => Some(p.cmp(q)),
                    _ => x.partial_cmp(&y),
                };
                use std::cmp::Ordering::{Equal, Greater, Less};
                Value::Bool(match op {
                    "<" => ord == Some(Less),
                    ">" => ord == Some(Greater),
                    "<=" => matches!(ord, Some(Less | Equal)),
                    _ => matches!(ord, Some(Greater | Equal)),
                })
            }
            "+" | "-" | "*" => match (&l, &r) {
                (Value::Int(x), Value::Int(y)) => Value::Int(match op {
                    "+" => x.wrapping_add(*y),
                    "-" => x.wrapping_sub(*y),
                    _ => x.wrapping_mul(*y),
                }),
                _ => {
                    let (Some(x), Some(y)) = (to_f64(&l), to_f64(&r)) else {
                        return Err(mismatch());
                    };
                    Value::Float(match op {
                        "+" => x + y,
                        "-" => x - y,
                        _ => x * y,
                    })
                }
            },
            "/" => {
                let (Some(x), Some(y)) = (to_f64(&l), to_f64(&r)) else {
                    return Err(mismatch());
                };
                Value::Float(x / y)
            }
            "**" => {
                let (Some(x), Some(y)) = (to_f64(&l), to_f64(&r)) else {
                    return Err(mismatch());
                };
                Value::Float(go_pow(x, y))
            }
            "%" => match (&l, &r) {
                (Value::Int(_), Value::Int(0)) => {
                    return Err(err("runtime error: integer divide by zero".to_owned()));
                }
                (Value::Int(x), Value::Int(y)) => Value::Int(x.wrapping_rem(*y)),
                _ => return Err(mismatch()),
            },
            "in" => match &r {
                Value::Array(items) => Value::Bool(items.iter().any(|i| equal(&l, i))),
                Value::Nil => Value::Bool(false),
                _ => {
                    return Err(err(format!(
                        "operator \"in\" not defined on {}",
                        go_type(&r)
                    )));
                }
            },
            _ => return Err(mismatch()),
        })
    }

    fn call(&mut self, name: &str, args: &[Node], at: usize) -> Result<Value, Located> {
        let err = |m: String| Located::new(m, at);
        if PREDICATE_BUILTINS.iter().any(|(n, _)| *n == name) {
            let items = match self.eval(&args[0])? {
                Value::Array(items) => items,
                other => {
                    return Err(err(format!("cannot iterate over {}", go_type(&other))));
                }
            };
            let mut results = Vec::with_capacity(items.len());
            for item in &items {
                let r = match args.get(1) {
                    Some(p) => {
                        self.pointers.push(item.clone());
                        let r = self.eval(p);
                        self.pointers.pop();
                        r?
                    }
                    None => item.clone(),
                };
                results.push(r);
            }
            let truth = |v: &Value| -> Result<bool, Located> {
                match v {
                    Value::Bool(b) => Ok(*b),
                    other => Err(err(format!(
                        "interface conversion: interface {{}} is {}, not bool",
                        go_type(other)
                    ))),
                }
            };
            return Ok(match name {
                "count" | "all" | "any" | "none" | "one" => {
                    let mut n = 0i64;
                    for r in &results {
                        n += i64::from(truth(r)?);
                    }
                    let len = results.len() as i64;
                    match name {
                        "count" => Value::Int(n),
                        "all" => Value::Bool(n == len),
                        "any" => Value::Bool(n > 0),
                        "none" => Value::Bool(n == 0),
                        _ => Value::Bool(n == 1),
                    }
                }
                "filter" => {
                    let mut kept = Vec::new();
                    for (item, r) in items.into_iter().zip(&results) {
                        if truth(r)? {
                            kept.push(item);
                        }
                    }
                    Value::Array(kept)
                }
                "map" => Value::Array(results),
                _ => sum(&results).map_err(err)?,
            });
        }
        let mut values = Vec::with_capacity(args.len());
        for a in args {
            values.push(self.eval(a)?);
        }
        let first = values.first().cloned().unwrap_or(Value::Nil);
        Ok(match name {
            "float" => match first {
                Value::Int(i) => Value::Float(i as f64),
                Value::Float(f) => Value::Float(f),
                other => {
                    return Err(err(format!(
                        "invalid operation: float({})",
                        go_type(&other)
                    )));
                }
            },
            "int" => match first {
                Value::Int(i) => Value::Int(i),
                Value::Float(f) => Value::Int(go_float_to_int64(f)),
                other => return Err(err(format!("invalid operation: int({})", go_type(&other)))),
            },
            "abs" => match first {
                Value::Int(i) => Value::Int(if i < 0 { i.wrapping_neg() } else { i }),
                Value::Float(f) => Value::Float(if f < 0.0 { -f } else { f }),
                other => {
                    return Err(err(format!(
                        "invalid argument for abs (type {})",
                        go_type(&other)
                    )));
                }
            },
            "ceil" | "floor" | "round" => {
                let Some(x) = to_f64(&first) else {
                    return Err(err(format!(
                        "invalid argument for {name} (type {})",
                        go_type(&first)
                    )));
                };
                Value::Float(match name {
                    "ceil" => x.ceil(),
                    "floor" => x.floor(),
                    _ => x.round(),
                })
            }
            "len" => match first {
                Value::Array(items) => Value::Int(items.len() as i64),
                other => {
                    return Err(err(format!(
                        "invalid argument for len (type {})",
                        go_type(&other)
                    )));
                }
            },
            "mean" => {
                let numbers = flatten_numbers(name, &values).map_err(err)?;
                if numbers.is_empty() {
                    Value::Float(0.0)
                } else {
                    Value::Float(numbers.iter().sum::<f64>() / numbers.len() as f64)
                }
            }
            "median" => {
                let mut numbers = flatten_numbers(name, &values).map_err(err)?;
                // Go's sort.Float64s puts NaN first.
                numbers.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => std::cmp::Ordering::Less,
                    (false, true) => std::cmp::Ordering::Greater,
                    _ => a.total_cmp(b),
                });
                let n = numbers.len();
                Value::Float(match n {
                    0 => 0.0,
                    _ if n % 2 == 1 => numbers[n / 2],
                    _ => (numbers[n / 2 - 1] + numbers[n / 2]) / 2.0,
                })
            }
            _ => min_max(name, &values).map_err(err)?,
        })
    }
}

/// Go's `math.Pow` (src/math/pow.go): integer powers by repeated squaring of the mantissa, so `x ** 2`
/// and `x ** 3` give Go's bits exactly; a fractional part of the exponent goes through `exp(yf * ln x)`,
/// where Rust's libm and Go's own `Exp`/`Log` may differ in the last bit.
fn go_pow(x: f64, y: f64) -> f64 {
    if y == 0.0 || x == 1.0 {
        return 1.0;
    }
    if y == 1.0 {
        return x;
    }
    if x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    if x == 0.0 || y.is_infinite() || x.is_infinite() {
        // Go's special cases here agree with IEEE pow, which powf implements.
        return x.powf(y);
    }
    if y == 0.5 {
        return x.sqrt();
    }
    if y == -0.5 {
        return 1.0 / x.sqrt();
    }
    let mut yi = y.abs().trunc();
    let mut yf = y.abs() - yi;
    if yf != 0.0 && x < 0.0 {
        return f64::NAN;
    }
    if yi >= 9_223_372_036_854_775_808.0 {
        // A huge even exponent: overflow or underflow, except for x == -1.
        return if x == -1.0 {
            1.0
        } else if (x.abs() < 1.0) == (y > 0.0) {
            0.0
        } else {
            f64::INFINITY
        };
    }
    let mut a1 = 1.0;
    let mut ae: i64 = 0;
    if yf != 0.0 {
        if yf > 0.5 {
            yf -= 1.0;
            yi += 1.0;
        }
        a1 = (yf * x.ln()).exp();
    }
    let (mut x1, mut xe) = frexp(x);
    let mut i = yi as i64;
    while i != 0 {
        if !(-(1 << 12)..=(1 << 12)).contains(&xe) {
            // Catastrophic overflow: let ldexp saturate.
            ae += xe;
            break;
        }
        if i & 1 == 1 {
            a1 *= x1;
            ae += xe;
        }
        x1 *= x1;
        xe <<= 1;
        if x1 < 0.5 {
            x1 += x1;
            xe -= 1;
        }
        i >>= 1;
    }
    if y < 0.0 {
        a1 = 1.0 / a1;
        ae = -ae;
    }
    ldexp(a1, ae)
}

/// Go's `math.Frexp`: `x = frac * 2^exp` with `|frac|` in [0.5, 1).
fn frexp(x: f64) -> (f64, i64) {
    if x == 0.0 || !x.is_finite() {
        return (x, 0);
    }
    let (mut x, mut exp) = (x, 0i64);
    if x.abs() < f64::MIN_POSITIVE {
        x *= (1u64 << 52) as f64;
        exp = -52;
    }
    let bits = x.to_bits();
    exp += ((bits >> 52) & 0x7ff) as i64 - 1022;
    let frac = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (frac, exp)
}

/// Go's `math.Ldexp`: `frac * 2^exp`, rounding once into the subnormal range.
fn ldexp(frac: f64, exp: i64) -> f64 {
    if frac == 0.0 || !frac.is_finite() {
        return frac;
    }
    let (frac, e) = frexp(frac);
    let exp = exp.saturating_add(e);
    if exp > 1024 {
        return if frac < 0.0 {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
    }
    if exp < -1075 {
        return if frac < 0.0 { -0.0 } else { 0.0 };
    }
    // frac in [0.5, 1): scale in two steps so no intermediate overflows, rounding only at the end.
    let half = exp / 2;
    frac * 2f64.powi(half as i32) * 2f64.powi((exp - half) as i32)
}

/// builtin `minMax`: arrays are flattened; the first element wins ties; the element keeps its type.
fn min_max(name: &str, values: &[Value]) -> Result<Value, String> {
    let mut best: Option<Value> = None;
    let visit = |v: &Value, best: &mut Option<Value>| -> Result<(), String> {
        let Some(x) = to_f64(v) else {
            return Err(format!("invalid argument for {name} (type {})", go_type(v)));
        };
        let replace = match best {
            None => true,
            Some(b) => {
                let y = to_f64(b).unwrap_or(f64::NAN);
                if name == "max" { y < x } else { y > x }
            }
        };
        if replace {
            *best = Some(v.clone());
        }
        Ok(())
    };
    for v in values {
        match v {
            Value::Array(items) => {
                for item in items {
                    if let Value::Array(_) = item {
                        min_max(name, std::slice::from_ref(item)).and_then(|m| {
                            if m == Value::Nil {
                                Ok(())
                            } else {
                                visit(&m, &mut best)
                            }
                        })?;
                    } else {
                        visit(item, &mut best)?;
                    }
                }
            }
            other => visit(other, &mut best)?,
        }
    }
    Ok(best.unwrap_or(Value::Nil))
}

/// The numbers of `mean` and `median`'s arguments, arrays flattened, in order.
fn flatten_numbers(name: &str, values: &[Value]) -> Result<Vec<f64>, String> {
    let mut out = Vec::new();
    for v in values {
        match v {
            Value::Array(items) => out.extend(flatten_numbers(name, items)?),
            other => match to_f64(other) {
                Some(x) => out.push(x),
                None => {
                    return Err(format!(
                        "invalid argument for {name} (type {})",
                        go_type(other)
                    ));
                }
            },
        }
    }
    Ok(out)
}

/// builtin `sum`: ints add as ints until a float appears.
fn sum(values: &[Value]) -> Result<Value, String> {
    let mut total = Value::Int(0);
    for v in values {
        total = match (&total, v) {
            (Value::Int(a), Value::Int(b)) => Value::Int(a.wrapping_add(*b)),
            _ => match (to_f64(&total), to_f64(v)) {
                (Some(a), Some(b)) => Value::Float(a + b),
                _ => {
                    return Err(format!(
                        "invalid operation: {} + {}",
                        go_type(&total),
                        go_type(v)
                    ));
                }
            },
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compiles `code` as written against `env` (all floats) and runs it with `values`.
    fn run(code: &str, env: &[(&str, Option<f64>)]) -> Result<Value, FormulaError> {
        let names: Vec<&str> = env.iter().map(|(n, _)| *n).collect();
        let f = Formula::compile_exact(code, &names)?;
        f.run(&|name| env.iter().find(|(n, _)| *n == name).and_then(|(_, v)| *v))
    }

    fn int(i: i64) -> Result<Value, ()> {
        Ok(Value::Int(i))
    }
    fn float(f: f64) -> Result<Value, ()> {
        Ok(Value::Float(f))
    }
    fn boolean(b: bool) -> Result<Value, ()> {
        Ok(Value::Bool(b))
    }

    /// Rows of expr-lang v1.17.8 `expr_test.go` TestExpr that use only the supported language, with
    /// `Int = 0`, `Float64 = 0` and `One = 1`, `Two = 2` of its mock environment.
    #[test]
    fn expr_test_table() {
        let rows: &[(&str, Result<Value, ()>)] = &[
            ("1", int(1)),
            ("-.5", float(-0.5)),
            ("true && false || false", boolean(false)),
            ("2 + 2 == 4", boolean(true)),
            ("8 % 3", int(2)),
            ("2 ** 8", float(256.0)),
            ("2 ^ 8", float(256.0)),
            ("-(2-5)**3-2/(+4-3)+-2", float(23.0)),
            ("1 in [1.5] || 1 not in [1]", boolean(false)),
            ("-1 not in [1]", boolean(true)),
            ("max([1, 2, 3])", int(3)),
            ("max(1, 2, 3)", int(3)),
            ("min([1, 2, 3])", int(1)),
            ("min(1, 2, 3)", int(1)),
            ("(true ? 0+1 : 2+3) + (false ? -1 : -2)", int(-1)),
            ("count([true, true, false])", int(2)),
            ("1 + 1", int(2)),
            ("1 /* one */ + 2 // two", int(3)),
            ("let x = 1; x + 2", int(3)),
            ("2^3 == 8", boolean(true)),
            ("4/2 == 2", boolean(true)),
            ("1 > 2 < 3", boolean(false)),
            ("1 < 2 < 3", boolean(true)),
            ("1 < 2 < 3 > 4", boolean(false)),
            ("1 < 2 < 3 > 2", boolean(true)),
            ("1 < 2 < 3 == true", boolean(true)),
        ];
        let mut passed = 0;
        for (code, want) in rows {
            let got = run(code, &[]).map_err(|_| ());
            assert_eq!(&got, want, "{code}");
            passed += 1;
        }
        // The rows over the mock environment.
        let env = [
            ("Int", Some(0.0)),
            ("Float64", Some(0.0)),
            ("One", Some(1.0)),
            ("Two", Some(2.0)),
        ];
        let env_rows: &[(&str, Result<Value, ()>)] = &[
            ("Float64 + 0", float(0.0)),
            ("0 + Float64", float(0.0)),
            ("0 <= Float64", boolean(true)),
            ("Float64 < 1", boolean(true)),
            ("(One * Two) * 3 == One * (Two * 3)", boolean(true)),
        ];
        for (code, want) in env_rows {
            assert_eq!(&run(code, &env).map_err(|_| ()), want, "{code}");
            passed += 1;
        }
        assert_eq!(passed, 31);
    }

    /// expr's typing and arithmetic as its docs (docs/language-definition.md) and checker state them.
    #[test]
    fn expr_semantics_differential_table() {
        let t = [("t", Some(10.0)), ("u", Some(4.0)), ("n", None)];
        let rows: &[(&str, Result<Value, ()>)] = &[
            // Ints stay ints under + - *; / ** ^ always float.
            ("7 / 2", float(3.5)),
            ("6 / 3", float(2.0)),
            ("7 * 2", int(14)),
            ("7 - 9", int(-2)),
            ("7 + 0.5", float(7.5)),
            ("2 ** 0.5", float(2f64.sqrt())),
            ("2 ** -1", float(0.5)),
            ("(-8) ** 3", float(-512.0)),
            ("-2 ** 2", float(-4.0)),
            ("2 ** 3 ** 2", float(512.0)),
            ("1 / 0", float(f64::INFINITY)),
            ("-1 / 0", float(f64::NEG_INFINITY)),
            ("7 % -3", int(1)),
            ("-7 % 3", int(-1)),
            ("9223372036854775807 + 1", int(i64::MIN)),
            // Precedence: * before +, comparisons before &&, && before ||.
            ("1 + 2 * 3", int(7)),
            ("(1 + 2) * 3", int(9)),
            ("10 - 4 - 3", int(3)),
            ("t / u * 2", float(5.0)),
            ("t > 5 && u > 5 || t == 10", boolean(true)),
            ("not (t > 5)", boolean(false)),
            ("!(t > 5) || true", boolean(true)),
            ("t > 5 and u < 5", boolean(true)),
            ("t < 5 or u < 5", boolean(true)),
            // Numbers compare across int and float.
            ("1 == 1.0", boolean(true)),
            ("t == 10", boolean(true)),
            ("t != 10", boolean(false)),
            ("nil == nil", boolean(true)),
            ("n == nil", boolean(true)),
            ("t == nil", boolean(false)),
            // Ternaries, nested to the right; `?:`.
            ("t > 5 ? t : u", float(10.0)),
            ("t < 5 ? t : u", float(4.0)),
            ("t > 1 ? u > 1 ? 3 : 4 : 5", int(3)),
            ("t > 1 ? 1 : u > 1 ? 2 : 3", int(1)),
            // ?? takes the right side only for nil.
            ("n ?? 5", int(5)),
            ("t ?? 5", float(10.0)),
            ("n ?? n ?? 7", int(7)),
            ("n ?? (t + 1)", float(11.0)),
            // Builtins.
            ("float(3)", float(3.0)),
            ("int(3.9)", int(3)),
            ("int(-3.9)", int(-3)),
            ("abs(-3)", int(3)),
            ("abs(-2.5)", float(2.5)),
            ("ceil(2.1)", float(3.0)),
            ("ceil(2)", float(2.0)),
            ("floor(-2.1)", float(-3.0)),
            ("round(2.5)", float(3.0)),
            ("round(-2.5)", float(-3.0)),
            ("max(t, u)", float(10.0)),
            ("max(1, 2.5)", float(2.5)),
            ("max(3, 2.5)", int(3)),
            ("min([t, u], 1)", int(1)),
            ("count([t, u], # > 5)", int(1)),
            ("count([t, u], {# > 1})", int(2)),
            ("sum([1, 2, 3])", int(6)),
            ("mean([t, u])", float(7.0)),
            ("mean(1, [2, 3], 4)", float(2.5)),
            ("median([t, u, 1])", float(4.0)),
            ("median([t, u, 1, 2])", float(3.0)),
            ("len([t, u, 1])", int(3)),
            ("sum([t, u])", float(14.0)),
            ("all([t, u], # > 1)", boolean(true)),
            ("any([t, u], # > 5)", boolean(true)),
            ("none([t, u], # > 50)", boolean(true)),
            ("one([t, u], # > 5)", boolean(true)),
            ("count(filter([t, u, 1], # > 2), # > 0)", int(2)),
            ("t in [1, 10]", boolean(true)),
            ("u in [1, 10]", boolean(false)),
            ("[1, 2] == [1, 2]", boolean(true)),
            ("let x = t * 2; let y = x + 1; y", float(21.0)),
            ("(1; 2; t)", float(10.0)),
            // Runtime errors.
            ("int(t) % 0", Err(())),
            ("n + 1", Err(())),
            ("-n", Err(())),
            ("float(n)", Err(())),
            ("max(n)", Err(())),
        ];
        let mut passed = 0;
        for (code, want) in rows {
            let got = run(code, &t).map_err(|_| ());
            assert_eq!(&got, want, "{code}");
            passed += 1;
        }
        assert_eq!(passed, rows.len());
    }

    /// What expr's checker refuses at compile time, with its message and position.
    #[test]
    fn compile_errors_name_the_position() {
        let env = ["t", "u"];
        let check = |code: &str, want: &str| {
            let err = Formula::compile_exact(code, &env).unwrap_err();
            let FormulaError::Compile { message, .. } = &err else {
                panic!("{code}: {err:?}");
            };
            assert_eq!(message, want, "{code}");
        };
        check("x + 1", "unknown name x (1:1)\n | x + 1\n | ^");
        check(
            "t + * 2",
            "unexpected token Operator(\"*\") (1:5)\n | t + * 2\n | ....^",
        );
        check(
            "t % 2",
            "invalid operation: % (mismatched types float64 and int) (1:3)\n | t % 2\n | ..^",
        );
        check(
            "t && true",
            "invalid operation: && (mismatched types float64 and bool) (1:3)\n | t && true\n | ..^",
        );
        check(
            "t ? 1 : 2",
            "non-bool expression (type float64) used as condition (1:1)\n | t ? 1 : 2\n | ^",
        );
        check(
            "!t",
            "invalid operation: ! (mismatched type float64) (1:1)\n | !t\n | ^",
        );
        check("(t", "unexpected token EOF (1:3)\n | (t\n | ..^");
        check("t +", "unexpected token EOF (1:4)\n | t +\n | ...^");
        check(
            "1 2",
            "unexpected token Number(\"2\") (1:3)\n | 1 2\n | ..^",
        );
        check(
            "t $ u",
            "unexpected token Identifier(\"$\") (1:3)\n | t $ u\n | ..^",
        );
        check(
            "t @ u",
            "unrecognized character: U+0040 '@' (1:3)\n | t @ u\n | ..^",
        );
        check(
            "t ?? u + 1",
            "Operator (+) and coalesce expressions (??) cannot be mixed. Wrap either by parentheses. (1:8)\n | t ?? u + 1\n | .......^",
        );
        check(
            "float(true)",
            "invalid argument for float (type bool) (1:1)\n | float(true)\n | ^",
        );
        check(
            "max()",
            "not enough arguments to call max (1:1)\n | max()\n | ^",
        );
        check(
            "count(t, # > 1)",
            "builtin count takes only array (got float64) (1:1)\n | count(t, # > 1)\n | ^",
        );
        check("t\n + x", "unknown name x (2:4)\n |  + x\n | ...^");
        check(
            "\"a\"",
            "string values are not supported by surge (1:1)\n | \"a\"\n | ^",
        );
        check(
            "t[0]",
            "member access and indexing are not supported by surge (1:2)\n | t[0]\n | .^",
        );
        check("12ab", "bad number syntax: \"12a\" (1:1)\n | 12ab\n | ^");
        check(
            "1e",
            "invalid float literal: strconv.ParseFloat: parsing \"1e\": invalid syntax (1:1)\n | 1e\n | ^",
        );
        check("", "unexpected token EOF");
    }

    #[test]
    fn rejects_deep_nesting_without_overflowing() {
        let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(Formula::compile(&deep, &[]).is_err());
        let minus = format!("{}1", "-".repeat(10_000));
        assert!(Formula::compile(&minus, &[]).is_err());
    }

    /// The formula cases of apis/keda/v1alpha1/scaledobject_webhook_test.go and the `cpu` formula of
    /// pkg/scaling/scale_handler_test.go, kedacore/keda 8b4f083c: (formula, target, named non-cpu/memory
    /// triggers, admitted).
    #[test]
    fn keda_webhook_formula_table() {
        let rows: &[(&str, &str, &[&str], bool)] = &[
            // should validate the so creation with ScalingModifiers.Formula
            (
                "workload_trig + cron_trig",
                "2",
                &["cron_trig", "workload_trig"],
                true,
            ),
            // shouldnt validate ... scalingModifiers.Formula but no target
            (
                "workload_trig + cron_trig",
                "",
                &["cron_trig", "workload_trig"],
                false,
            ),
            // shouldnt validate ... when triggers dont have names
            ("workload_trig + cron_trig", "", &[], false),
            // should validate ... formula triggers do have names but not all triggers
            ("workload_trig + 1", "2", &["workload_trig"], true),
            // should validate ... when formula casts to float already
            ("float(workload_trig + 1)", "2", &["workload_trig"], true),
            // casting float from ternary operator
            (
                "float(workload_trig < 5 ? cron_trig + workload_trig : 5)",
                "2",
                &["cron_trig", "workload_trig"],
                true,
            ),
            // ternary operator without casting float
            (
                "workload_trig < 5 ? cron_trig + workload_trig : 5",
                "2",
                &["cron_trig", "workload_trig"],
                true,
            ),
            // count operator
            (
                "count([trig_one,trig_two],{#>1}) > 1 ? 5 : 0",
                "2",
                &["trig_one", "trig_two"],
                true,
            ),
            // complex ternary
            (
                "float(trig_one < 2 ? trig_one+trig_two >= 2 ? 5 : 10 : 0)",
                "2",
                &["trig_one", "trig_two"],
                true,
            ),
            // double float cast
            (
                "float(float(trig_two < 5 ? trig_one + trig_two : 5))",
                "2",
                &["trig_one", "trig_two"],
                true,
            ),
            // scalingModifiers fallback behavior
            (
                "trig_one ?? trig_two ?? 5",
                "2",
                &["trig_one", "trig_two"],
                true,
            ),
            // scale_handler_test: a formula over a cpu trigger (left out of the environment)
            ("cpu", "1", &[], false),
        ];
        let mut passed = 0;
        for (formula, target, triggers, admitted) in rows {
            let got = validate_scaling_modifiers(formula, target, false, triggers);
            assert_eq!(got.is_ok(), *admitted, "{formula}: {got:?}");
            passed += 1;
        }
        assert_eq!(passed, 12);
        assert_eq!(
            validate_scaling_modifiers("", "2", false, &[]).unwrap_err(),
            ScalingModifiersError::FormulaMandatory
        );
        assert_eq!(
            validate_scaling_modifiers("a", "0", false, &["a"]).unwrap_err(),
            ScalingModifiersError::Target("0".to_owned())
        );
        assert_eq!(
            validate_scaling_modifiers("a", "2", true, &["a"]).unwrap_err(),
            ScalingModifiersError::Utilization
        );
        // The dummy run at -1.0 refuses runtime errors.
        assert!(validate_scaling_modifiers("int(a) % (int(a) + 1)", "2", false, &["a"]).is_err());
    }

    #[test]
    fn keda_float_cast() {
        assert_eq!(cast_to_float_if_necessary("a + b"), "float(a + b)");
        assert_eq!(cast_to_float_if_necessary("float(a) + b"), "float(a) + b");
        assert_eq!(
            cast_to_float_if_necessary("a ?? 5"),
            "let _kedaCompositeResult = (a ?? 5); _kedaCompositeResult == nil ? nil : float(_kedaCompositeResult)"
        );
        // A ternary of ints becomes a float through the cast.
        let f = Formula::compile("a > 1 ? 2 : 3", &["a"]).unwrap();
        assert_eq!(f.evaluate(&|_| Some(5.0)), Ok(Some(2.0)));
        // Without the cast an int result is an error, as KEDA's type switch makes it.
        let f = Formula::compile_exact("a > 1 ? 2 : 3", &["a"]).unwrap();
        assert_eq!(
            f.evaluate(&|_| Some(5.0)),
            Err(FormulaError::NotFloat("int (2)".to_owned()))
        );
        // `float(a) > 1` starts with `float(` and is left alone: a bool result is an error.
        let f = Formula::compile("float(a) > 1", &["a"]).unwrap();
        assert_eq!(
            f.evaluate(&|_| Some(5.0)),
            Err(FormulaError::NotFloat("bool (true)".to_owned()))
        );
    }

    /// pkg/scaling/modifiers/formula_test.go (kedacore/keda 8b4f083c) TestCalculateScalingModifiersFormula,
    /// TestCalculateScalingModifiersFormulaFallbackReplicas, and scale_handler_test.go
    /// TestScalingModifiersFormula.
    #[test]
    fn keda_calculate_formula() {
        // trigger1 = 2000m, trigger2 = 5000m: 7 stored as 7000m.
        let f = Formula::compile("trigger1 + trigger2", &["trigger1", "trigger2"]).unwrap();
        let values = |n: &str| match n {
            "trigger1" => Some(scaler_metric_value(2.0)),
            "trigger2" => Some(scaler_metric_value(5.0)),
            _ => None,
        };
        let out = f.evaluate(&values).unwrap().unwrap();
        assert_eq!(composite_milli(out), 7000);
        // Both triggers nil: fallback.replicas 7 * target 2 = 14 -> 14000m.
        let f = Formula::compile("trigger1 ?? trigger2", &["trigger1", "trigger2"]).unwrap();
        assert_eq!(f.evaluate(&|_| None), Ok(None));
        let out = nil_fallback_value(Some(7), 2.0).unwrap();
        assert_eq!(composite_milli(out), 14000);
        assert_eq!(nil_fallback_value(None, 2.0), Err(FormulaError::Nil));
        // One nil, one value: the value.
        let one = |n: &str| (n == "trigger2").then_some(3.0);
        assert_eq!(f.evaluate(&one), Ok(Some(3.0)));
    }

    /// TestScalingModifierTriggerValue of formula_test.go: failures against a threshold of 3.
    #[test]
    fn keda_trigger_value_table() {
        let rows = [
            (None, None, false),       // no fallback configured
            (Some(3), None, false),    // no health status for trigger
            (Some(3), Some(2), false), // failures below threshold
            (Some(3), Some(3), false), // at threshold (gate is strict >)
            (Some(3), Some(4), true),  // one over threshold
            (Some(3), Some(5), true),  // exceed threshold
            (Some(3), Some(0), false), // healthy
        ];
        for (threshold, failures, nil) in rows {
            let got = scaling_modifier_trigger_value(7.0, threshold, failures);
            assert_eq!(
                got,
                if nil { None } else { Some(7.0) },
                "{threshold:?} {failures:?}"
            );
        }
    }

    #[test]
    fn composite_value_handling() {
        // Truncated toward zero to the milli-unit, negative kept.
        assert_eq!(composite_milli(1.2345), 1234);
        assert_eq!(composite_milli(-1.2345), -1234);
        assert_eq!(composite_milli(0.0009), 0);
        // Go's amd64 conversion of NaN, Inf and out-of-range values.
        assert_eq!(composite_milli(f64::INFINITY), i64::MIN);
        assert_eq!(composite_milli(f64::NAN), i64::MIN);
        assert_eq!(composite_milli(1e17), i64::MIN);
        assert_eq!(composite_target_milli(2.5), 2500);
        assert_eq!(composite_target_milli(0.0005), 0);
        // Scaler values: negatives, NaN and Inf read 0; three decimals, rounded.
        assert_eq!(scaler_metric_value(-3.0), 0.0);
        assert_eq!(scaler_metric_value(f64::NAN), 0.0);
        assert_eq!(scaler_metric_value(1.23456), 1.235);
        assert_eq!(scaler_metric_value(2.0), 2.0);
    }

    #[test]
    fn go_pow_matches_go_for_integer_powers() {
        assert_eq!(go_pow(3.0, 2.0), 9.0);
        assert_eq!(go_pow(1.1, 2.0), 1.1 * 1.1);
        assert_eq!(go_pow(2.0, 10.0), 1024.0);
        assert_eq!(go_pow(2.0, -2.0), 0.25);
        assert_eq!(go_pow(10.0, 400.0), f64::INFINITY);
        assert_eq!(go_pow(10.0, -400.0), 0.0);
        assert_eq!(go_pow(-2.0, 3.0), -8.0);
        assert!(go_pow(-2.0, 0.5).is_nan());
        assert_eq!(go_pow(4.0, 0.5), 2.0);
        assert_eq!(go_pow(0.0, -1.0), f64::INFINITY);
    }
}
