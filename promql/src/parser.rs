//! Recursive-descent PromQL parser with Prometheus's precedence and type checks.

use surge_model::METRIC_NAME;

use super::ast::*;
use super::lexer::{Tok, Token, lex};
use surge_store::cache::{MatchOp, Matcher};

/// Parses a PromQL expression of the supported subset.
pub fn parse(query: &str) -> Result<Expr, ParseError> {
    parse_inner(query).map_err(|mut e| {
        e.query = query.to_string();
        e
    })
}

/// Parses a series selector as `match[]` takes it (`up{job="x"}` or `{job="x"}`).
pub fn parse_selector(query: &str) -> Result<Vec<Matcher>, ParseError> {
    let e = parse(query)?;
    match e.kind {
        ExprKind::Selector(s) => Ok(s.matchers),
        _ => {
            let mut err = ParseError::new(e.pos.start, "expected a series selector");
            err.query = query.to_string();
            Err(err)
        }
    }
}

fn parse_inner(query: &str) -> Result<Expr, ParseError> {
    let toks = lex(query)?;
    let mut p = Parser { toks, i: 0 };
    if p.peek() == &Tok::Eof {
        return Err(ParseError::new(0, "no expression found in input"));
    }
    let e = p.expr(0)?;
    if p.peek() != &Tok::Eof {
        return Err(p.unexpected());
    }
    Ok(e)
}

struct Parser {
    toks: Vec<Token>,
    i: usize,
}

fn is_keyword(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "by" | "without"
            | "on"
            | "ignoring"
            | "group_left"
            | "group_right"
            | "bool"
            | "offset"
            | "and"
            | "or"
            | "unless"
            | "atan2"
    )
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.i].tok
    }

    fn tok(&self) -> &Token {
        &self.toks[self.i]
    }

    fn next(&mut self) -> Token {
        let t = self.toks[self.i].clone();
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn prev_end(&self) -> usize {
        if self.i == 0 {
            0
        } else {
            self.toks[self.i - 1].end
        }
    }

    fn unexpected(&self) -> ParseError {
        let t = self.tok();
        ParseError::new(t.start, format!("unexpected {}", t.tok.describe()))
    }

    fn unexpected_in(&self, ctx: &str) -> ParseError {
        let t = self.tok();
        ParseError::new(t.start, format!("unexpected {} in {ctx}", t.tok.describe()))
    }

    fn expect(&mut self, want: Tok, ctx: &str) -> Result<Token, ParseError> {
        if *self.peek() == want {
            Ok(self.next())
        } else {
            Err(self.unexpected_in(ctx))
        }
    }

    fn peek_ident(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    fn binop(&self) -> Option<BinOp> {
        Some(match self.peek() {
            Tok::Add => BinOp::Add,
            Tok::Sub => BinOp::Sub,
            Tok::Mul => BinOp::Mul,
            Tok::Div => BinOp::Div,
            Tok::Mod => BinOp::Mod,
            Tok::Pow => BinOp::Pow,
            Tok::EqlEql => BinOp::Eq,
            Tok::Ne => BinOp::Ne,
            Tok::Gt => BinOp::Gt,
            Tok::Lt => BinOp::Lt,
            Tok::Ge => BinOp::Ge,
            Tok::Le => BinOp::Le,
            _ => return None,
        })
    }

    /// Precedence climbing; `^` is right-associative, the rest left-associative.
    fn expr(&mut self, min_prec: u8) -> Result<Expr, ParseError> {
        if let Tok::Ident(s) = self.peek()
            && matches!(
                s.to_ascii_lowercase().as_str(),
                "and" | "or" | "unless" | "atan2"
            )
        {
            return Err(self.unexpected());
        }
        let mut lhs = self.unary()?;
        loop {
            if let Tok::Ident(s) = self.peek() {
                let s = s.to_ascii_lowercase();
                if matches!(s.as_str(), "and" | "or" | "unless" | "atan2") {
                    let t = self.tok();
                    return Err(ParseError::new(
                        t.start,
                        format!("binary operator {s:?} is not supported by surge"),
                    ));
                }
            }
            let Some(op) = self.binop() else { break };
            let prec = op.precedence();
            if prec < min_prec {
                break;
            }
            let op_tok = self.next();
            let mut return_bool = false;
            if self.peek_ident("bool") {
                self.next();
                if !op.is_comparison() {
                    return Err(ParseError::new(
                        op_tok.start,
                        "bool modifier can only be used on comparison operators",
                    ));
                }
                return_bool = true;
            }
            let mut matching = None;
            if self.peek_ident("on") || self.peek_ident("ignoring") {
                let on = self.peek_ident("on");
                self.next();
                matching = Some(VectorMatching {
                    on,
                    labels: self.label_list()?,
                });
                if self.peek_ident("group_left") || self.peek_ident("group_right") {
                    let t = self.tok();
                    return Err(ParseError::new(
                        t.start,
                        "group_left/group_right (many-to-one matching) is not supported by surge",
                    ));
                }
            }
            let next_min = if op == BinOp::Pow { prec } else { prec + 1 };
            let rhs = self.expr(next_min)?;
            lhs = self.binary(op, lhs, rhs, return_bool, matching, op_tok.start)?;
        }
        Ok(lhs)
    }

    fn binary(
        &self,
        op: BinOp,
        lhs: Expr,
        rhs: Expr,
        return_bool: bool,
        matching: Option<VectorMatching>,
        op_pos: usize,
    ) -> Result<Expr, ParseError> {
        let (lt, rt) = (lhs.value_type(), rhs.value_type());
        let pos = PosRange {
            start: lhs.pos.start,
            end: rhs.pos.end,
        };
        for (t, e) in [(lt, &lhs), (rt, &rhs)] {
            if t != ValueType::Scalar && t != ValueType::Vector {
                return Err(ParseError::new(
                    e.pos.start,
                    "binary expression must contain only scalar and instant vector types",
                ));
            }
        }
        if op.is_comparison() && !return_bool && lt == ValueType::Scalar && rt == ValueType::Scalar
        {
            return Err(ParseError::new(
                op_pos,
                "comparisons between scalars must use BOOL modifier",
            ));
        }
        if matching.is_some() && (lt != ValueType::Vector || rt != ValueType::Vector) {
            return Err(ParseError::new(
                pos.start,
                "vector matching only allowed between instant vectors",
            ));
        }
        Ok(Expr {
            kind: ExprKind::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
                return_bool,
                matching,
            },
            pos,
        })
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        match self.peek() {
            Tok::Sub | Tok::Add => {
                let neg = *self.peek() == Tok::Sub;
                let start = self.next().start;
                // Unary minus binds looser than `^`: -2^2 = -4.
                let e = self.expr(BinOp::Pow.precedence())?;
                let t = e.value_type();
                if t != ValueType::Scalar && t != ValueType::Vector {
                    return Err(ParseError::new(
                        e.pos.start,
                        "unary expression only allowed on expressions of type scalar or instant vector",
                    ));
                }
                let pos = PosRange {
                    start,
                    end: e.pos.end,
                };
                if !neg {
                    return Ok(Expr { kind: e.kind, pos });
                }
                if let ExprKind::Number(n) = e.kind {
                    return Ok(Expr {
                        kind: ExprKind::Number(-n),
                        pos,
                    });
                }
                Ok(Expr {
                    kind: ExprKind::Neg(Box::new(e)),
                    pos,
                })
            }
            _ => self.postfix(),
        }
    }

    fn postfix(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.primary()?;
        loop {
            match self.peek() {
                Tok::LBracket => {
                    let lb = self.next();
                    let ExprKind::Selector(sel) = e.kind else {
                        return Err(ParseError::new(
                            lb.start,
                            "ranges only allowed for vector selectors",
                        ));
                    };
                    if sel.offset_ms != 0 {
                        return Err(ParseError::new(lb.start, "unexpected left bracket '['"));
                    }
                    let range_ms = match self.peek() {
                        Tok::Duration(ms) => *ms,
                        _ => return Err(self.unexpected_in("range selector")),
                    };
                    self.next();
                    if *self.peek() == Tok::Colon {
                        let t = self.tok();
                        return Err(ParseError::new(
                            t.start,
                            "subqueries are not supported by surge",
                        ));
                    }
                    let rb = self.expect(Tok::RBracket, "range selector")?;
                    if range_ms <= 0 {
                        return Err(ParseError::new(lb.start, "range must be greater than 0"));
                    }
                    e = Expr {
                        kind: ExprKind::Matrix { sel, range_ms },
                        pos: PosRange {
                            start: e.pos.start,
                            end: rb.end,
                        },
                    };
                }
                Tok::Ident(s) if s.eq_ignore_ascii_case("offset") => {
                    let kw = self.next();
                    let neg = if *self.peek() == Tok::Sub {
                        self.next();
                        true
                    } else {
                        false
                    };
                    let ms = match self.peek() {
                        Tok::Duration(ms) => *ms,
                        _ => return Err(self.unexpected_in("offset")),
                    };
                    let dur = self.next();
                    let ms = if neg { -ms } else { ms };
                    let sel = match &mut e.kind {
                        ExprKind::Selector(s) | ExprKind::Matrix { sel: s, .. } => s,
                        _ => {
                            return Err(ParseError::new(
                                kw.start,
                                "offset modifier must be preceded by an instant vector selector or range vector selector",
                            ));
                        }
                    };
                    if sel.offset_ms != 0 {
                        return Err(ParseError::new(
                            kw.start,
                            "offset may not be set multiple times",
                        ));
                    }
                    sel.offset_ms = ms;
                    e.pos.end = dur.end;
                }
                Tok::At => {
                    let t = self.tok();
                    return Err(ParseError::new(
                        t.start,
                        "the @ modifier is not supported by surge",
                    ));
                }
                _ => return Ok(e),
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let t = self.tok().clone();
        match &t.tok {
            Tok::Number(n) => {
                self.next();
                Ok(Expr {
                    kind: ExprKind::Number(*n),
                    pos: PosRange {
                        start: t.start,
                        end: t.end,
                    },
                })
            }
            Tok::Str(s) => {
                self.next();
                Ok(Expr {
                    kind: ExprKind::String(s.clone()),
                    pos: PosRange {
                        start: t.start,
                        end: t.end,
                    },
                })
            }
            Tok::LParen => {
                self.next();
                let inner = self.expr(0)?;
                if *self.peek() != Tok::RParen {
                    if *self.peek() == Tok::Eof {
                        return Err(ParseError::new(t.start, "unclosed left parenthesis"));
                    }
                    return Err(self.unexpected());
                }
                let rp = self.next();
                Ok(Expr {
                    kind: ExprKind::Paren(Box::new(inner)),
                    pos: PosRange {
                        start: t.start,
                        end: rp.end,
                    },
                })
            }
            Tok::LBrace => self.selector(None, t.start),
            Tok::Ident(name) => {
                let lower = name.to_ascii_lowercase();
                if lower == "inf" || lower == "nan" {
                    self.next();
                    let v = if lower == "inf" {
                        f64::INFINITY
                    } else {
                        f64::NAN
                    };
                    return Ok(Expr {
                        kind: ExprKind::Number(v),
                        pos: PosRange {
                            start: t.start,
                            end: t.end,
                        },
                    });
                }
                if let Some(op) = AggOp::from_name(name) {
                    return self.aggregate(op, t.start);
                }
                if matches!(
                    lower.as_str(),
                    "group"
                        | "stddev"
                        | "stdvar"
                        | "topk"
                        | "bottomk"
                        | "quantile"
                        | "count_values"
                ) {
                    return Err(ParseError::new(
                        t.start,
                        format!("aggregation {lower:?} is not supported by surge"),
                    ));
                }
                if is_keyword(name) {
                    return Err(self.unexpected());
                }
                if self.toks.get(self.i + 1).map(|t| &t.tok) == Some(&Tok::LParen) {
                    return self.call(name.clone(), t.start);
                }
                self.next();
                self.selector(Some(name.clone()), t.start)
            }
            Tok::Eof => Err(ParseError::new(t.start, "unexpected end of input")),
            _ => Err(self.unexpected()),
        }
    }

    fn label_list(&mut self) -> Result<Vec<String>, ParseError> {
        self.expect(Tok::LParen, "grouping opts")?;
        let mut out = Vec::new();
        loop {
            match self.peek().clone() {
                Tok::RParen => {
                    self.next();
                    return Ok(out);
                }
                Tok::Ident(s) if surge_model::is_valid_label_name(&s) => {
                    self.next();
                    out.push(s);
                    match self.peek() {
                        Tok::Comma => {
                            self.next();
                        }
                        Tok::RParen => {}
                        _ => return Err(self.unexpected_in("grouping opts")),
                    }
                }
                _ => return Err(self.unexpected_in("grouping opts")),
            }
        }
    }

    fn aggregate(&mut self, op: AggOp, start: usize) -> Result<Expr, ParseError> {
        self.next();
        let mut grouping = None;
        let take_grouping = |p: &mut Parser| -> Result<Option<(bool, Vec<String>)>, ParseError> {
            if p.peek_ident("by") || p.peek_ident("without") {
                let without = p.peek_ident("without");
                p.next();
                Ok(Some((without, p.label_list()?)))
            } else {
                Ok(None)
            }
        };
        if let Some(g) = take_grouping(self)? {
            grouping = Some(g);
        }
        let lp = self.expect(Tok::LParen, "aggregation")?;
        if *self.peek() == Tok::RParen {
            return Err(ParseError::new(
                self.tok().start,
                "no arguments for aggregate expression provided",
            ));
        }
        let arg = self.expr(0)?;
        if *self.peek() == Tok::Comma {
            return Err(ParseError::new(
                self.tok().start,
                "aggregations with a parameter are not supported by surge",
            ));
        }
        if *self.peek() != Tok::RParen {
            if *self.peek() == Tok::Eof {
                return Err(ParseError::new(lp.start, "unclosed left parenthesis"));
            }
            return Err(self.unexpected());
        }
        let rp = self.next();
        let mut end = rp.end;
        if let Some(g) = take_grouping(self)? {
            if grouping.is_some() {
                return Err(ParseError::new(
                    start,
                    "aggregation has two grouping clauses",
                ));
            }
            grouping = Some(g);
            end = self.prev_end();
        }
        if arg.value_type() != ValueType::Vector {
            return Err(ParseError::new(
                arg.pos.start,
                format!(
                    "expected type instant vector in aggregation expression, got {}",
                    arg.value_type().name()
                ),
            ));
        }
        let (without, grouping) = grouping.unwrap_or((false, Vec::new()));
        Ok(Expr {
            kind: ExprKind::Aggregate {
                op,
                expr: Box::new(arg),
                grouping,
                without,
            },
            pos: PosRange { start, end },
        })
    }

    fn call(&mut self, name: String, start: usize) -> Result<Expr, ParseError> {
        let func = Func::from_name(&name).ok_or_else(|| {
            ParseError::new(start, format!("unknown function with name {name:?}"))
        })?;
        self.next();
        let lp = self.expect(Tok::LParen, "function call")?;
        let mut args = Vec::new();
        if *self.peek() != Tok::RParen {
            loop {
                args.push(self.expr(0)?);
                match self.peek() {
                    Tok::Comma => {
                        self.next();
                    }
                    Tok::RParen => break,
                    Tok::Eof => return Err(ParseError::new(lp.start, "unclosed left parenthesis")),
                    _ => return Err(self.unexpected()),
                }
            }
        }
        let rp = self.next();
        let pos = PosRange { start, end: rp.end };
        let (want, _) = func.signature();
        if args.len() != want.len() {
            return Err(ParseError::new(
                pos.end.saturating_sub(1).max(start),
                format!(
                    "expected {} argument(s) in call to {:?}, got {}",
                    want.len(),
                    func.name(),
                    args.len()
                ),
            ));
        }
        for (a, w) in args.iter().zip(want) {
            if a.value_type() != *w {
                return Err(ParseError::new(
                    a.pos.start,
                    format!(
                        "expected type {} in call to function {:?}, got {}",
                        w.name(),
                        func.name(),
                        a.value_type().name()
                    ),
                ));
            }
        }
        Ok(Expr {
            kind: ExprKind::Call { func, args },
            pos,
        })
    }

    fn selector(&mut self, name: Option<String>, start: usize) -> Result<Expr, ParseError> {
        let mut matchers = Vec::new();
        if let Some(n) = &name {
            matchers.push(
                Matcher::new(MatchOp::Equal, METRIC_NAME, n.clone())
                    .map_err(|e| ParseError::new(start, e.to_string()))?,
            );
        }
        let mut end = self.prev_end().max(start);
        if *self.peek() == Tok::LBrace {
            let lb = self.next();
            loop {
                let t = self.tok().clone();
                let label = match &t.tok {
                    Tok::RBrace => {
                        self.next();
                        break;
                    }
                    Tok::Ident(s) => s.clone(),
                    Tok::Eof => {
                        return Err(ParseError::new(
                            t.start,
                            "unexpected end of input inside braces",
                        ));
                    }
                    _ => return Err(self.unexpected_in("label matching")),
                };
                self.next();
                let op = match self.peek() {
                    Tok::Assign => MatchOp::Equal,
                    Tok::Ne => MatchOp::NotEqual,
                    Tok::ReMatch => MatchOp::Regex,
                    Tok::ReNotMatch => MatchOp::NotRegex,
                    _ => return Err(self.unexpected_in("label matching")),
                };
                self.next();
                let vt = self.tok().clone();
                let Tok::Str(value) = &vt.tok else {
                    return Err(self.unexpected_in("label matching"));
                };
                self.next();
                if label == METRIC_NAME && name.is_some() {
                    return Err(ParseError::new(
                        t.start,
                        "metric name must not be set twice",
                    ));
                }
                let m = Matcher::new(op, label, value.clone()).map_err(|e| {
                    let msg = e.to_string();
                    let last = msg
                        .lines()
                        .last()
                        .unwrap_or("")
                        .trim_start_matches("error: ");
                    ParseError::new(vt.start, format!("error parsing regexp: {last}"))
                })?;
                matchers.push(m);
                match self.peek() {
                    Tok::Comma => {
                        self.next();
                    }
                    Tok::RBrace => {}
                    Tok::Eof => {
                        return Err(ParseError::new(
                            lb.start,
                            "unexpected end of input inside braces",
                        ));
                    }
                    _ => return Err(self.unexpected_in("label matching")),
                }
            }
            end = self.prev_end();
        }
        if !matchers.iter().any(|m| !m.matches("")) {
            return Err(ParseError::new(
                start,
                "vector selector must contain at least one non-empty matcher",
            ));
        }
        Ok(Expr {
            kind: ExprKind::Selector(VectorSelector {
                name,
                matchers,
                offset_ms: 0,
            }),
            pos: PosRange { start, end },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `check(query, expected)`: the expected text is the S-expression rendering below, or the error.
    fn check(q: &str, want: &str) {
        let got = match parse(q) {
            Ok(e) => sexp(&e),
            Err(e) => e.to_string(),
        };
        assert_eq!(got, want, "query: {q}");
    }

    fn sexp(e: &Expr) -> String {
        let p = format!("@{}..{}", e.pos.start, e.pos.end);
        match &e.kind {
            ExprKind::Number(n) => format!("{n}{p}"),
            ExprKind::String(s) => format!("{s:?}{p}"),
            ExprKind::Selector(s) => sel(s, &p),
            ExprKind::Matrix { sel: s, range_ms } => format!("{}[{range_ms}ms]", sel(s, &p)),
            ExprKind::Call { func, args } => format!(
                "({}{p} {})",
                func.name(),
                args.iter().map(sexp).collect::<Vec<_>>().join(" ")
            ),
            ExprKind::Aggregate {
                op,
                expr,
                grouping,
                without,
            } => format!(
                "({op:?}{p} {} {} {})",
                if *without { "without" } else { "by" },
                grouping.join(","),
                sexp(expr)
            ),
            ExprKind::Binary {
                op,
                lhs,
                rhs,
                return_bool,
                matching,
            } => format!(
                "({op:?}{}{}{p} {} {})",
                if *return_bool { " bool" } else { "" },
                matching
                    .as_ref()
                    .map(|m| format!(
                        " {}({})",
                        if m.on { "on" } else { "ignoring" },
                        m.labels.join(",")
                    ))
                    .unwrap_or_default(),
                sexp(lhs),
                sexp(rhs)
            ),
            ExprKind::Neg(e) => format!("(neg{p} {})", sexp(e)),
            ExprKind::Paren(e) => format!("(paren{p} {})", sexp(e)),
        }
    }

    fn sel(s: &VectorSelector, p: &str) -> String {
        let m: Vec<_> = s
            .matchers
            .iter()
            .map(|m| format!("{}{}{:?}", m.name, m.op.as_str(), m.value))
            .collect();
        let off = if s.offset_ms != 0 {
            format!(" offset {}ms", s.offset_ms)
        } else {
            String::new()
        };
        format!("{{{}}}{off}{p}", m.join(","))
    }

    #[test]
    fn parses_with_positions() {
        let table = [
            ("1", "1@0..1"),
            ("-1", "-1@0..2"),
            ("Inf", "inf@0..3"),
            ("-2 ^ 2", "(neg@0..6 (Pow@1..6 2@1..2 2@5..6))"),
            ("2 ^ 3 ^ 2", "(Pow@0..9 2@0..1 (Pow@4..9 3@4..5 2@8..9))"),
            ("1 + 2 * 3", "(Add@0..9 1@0..1 (Mul@4..9 2@4..5 3@8..9))"),
            ("up", "{__name__=\"up\"}@0..2"),
            (
                "up{job=~\"a|b\", i!=\"x\"}",
                "{__name__=\"up\",job=~\"a|b\",i!=\"x\"}@0..22",
            ),
            ("{job=\"a\",}", "{job=\"a\"}@0..10"),
            (
                "rate(x[30s])",
                "(rate@0..12 {__name__=\"x\"}@5..11[30000ms])",
            ),
            (
                "rate(x[1m] offset 5m)",
                "(rate@0..21 {__name__=\"x\"} offset 300000ms@5..20[60000ms])",
            ),
            (
                "sum by (job) (rate(x[1m]))",
                "(Sum@0..26 by job (rate@14..25 {__name__=\"x\"}@19..24[60000ms]))",
            ),
            (
                "sum(x) without (a, b)",
                "(Sum@0..21 without a,b {__name__=\"x\"}@4..5)",
            ),
            (
                "a > bool on(x) b",
                "(Gt bool on(x)@0..16 {__name__=\"a\"}@0..1 {__name__=\"b\"}@15..16)",
            ),
            (
                "histogram_quantile(0.9, sum by (le) (rate(h_bucket[1m])))",
                "(histogram_quantile@0..57 0.9@19..22 (Sum@24..56 by le (rate@37..55 {__name__=\"h_bucket\"}@42..54[60000ms])))",
            ),
            ("(1)", "(paren@0..3 1@1..2)"),
            ("time()", "(time@0..6 )"),
        ];
        for (q, want) in table {
            check(q, want);
        }
    }

    #[test]
    fn errors_have_prometheus_positions_and_phrasing() {
        let table = [
            (
                "rate(x[5m]))",
                "1:12: parse error: unexpected right parenthesis ')'",
            ),
            (
                "sum(rate(x[5m])",
                "1:4: parse error: unclosed left parenthesis",
            ),
            ("", "1:1: parse error: no expression found in input"),
            (
                "rate(x)",
                "1:6: parse error: expected type range vector in call to function \"rate\", got instant vector",
            ),
            (
                "foo(x)",
                "1:1: parse error: unknown function with name \"foo\"",
            ),
            (
                "1 > 2",
                "1:3: parse error: comparisons between scalars must use BOOL modifier",
            ),
            (
                "x{",
                "1:3: parse error: unexpected end of input inside braces",
            ),
            (
                "{a=\"\"}",
                "1:1: parse error: vector selector must contain at least one non-empty matcher",
            ),
            (
                "sum(x[5m])",
                "1:5: parse error: expected type instant vector in aggregation expression, got range vector",
            ),
            (
                "x +\n  )",
                "2:3: parse error: unexpected right parenthesis ')'",
            ),
            (
                "rate(x[5m], 1)",
                "1:14: parse error: expected 1 argument(s) in call to \"rate\", got 2",
            ),
            (
                "x{a=~\"(\"}",
                "1:6: parse error: error parsing regexp: unclosed group",
            ),
            (
                "x[5m] + 1",
                "1:1: parse error: binary expression must contain only scalar and instant vector types",
            ),
            (
                "1 + bool 2",
                "1:3: parse error: bool modifier can only be used on comparison operators",
            ),
        ];
        for (q, want) in table {
            check(q, want);
        }
    }
}
