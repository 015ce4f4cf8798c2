//! Recursive-descent PromQL parser with Prometheus's precedence, type checks and error phrasing
//! (`promql/parser/generated_parser.y` and `parse.go` of Prometheus 2.42), plus Prometheus 3's quoted
//! UTF-8 names inside braces (`{"my.metric", "k.8s"="v"}`) and in grouping lists.

use surge_model::METRIC_NAME;

use super::ast::*;
use super::lexer::{Tok, Token, lex};
use surge_store::cache::{MatchOp, Matcher};

/// Parses a PromQL expression.
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
        ExprKind::Selector(s) if s.offset_ms == 0 && s.at.is_none() => Ok(s.matchers),
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

/// The binary operators written as words.
fn word_binop(s: &str) -> Option<BinOp> {
    Some(match s.to_ascii_lowercase().as_str() {
        "and" => BinOp::And,
        "or" => BinOp::Or,
        "unless" => BinOp::Unless,
        "atan2" => BinOp::Atan2,
        _ => return None,
    })
}

/// Prometheus's `timestamp.FromFloatSeconds`.
fn seconds_to_ms(f: f64) -> i64 {
    (f * 1000.0).round() as i64
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.i].tok
    }

    fn peek_at(&self, ahead: usize) -> &Tok {
        let i = (self.i + ahead).min(self.toks.len() - 1);
        &self.toks[i].tok
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
            Tok::Ident(s) => return word_binop(s),
            _ => return None,
        })
    }

    /// Precedence climbing; `^` is right-associative, the rest left-associative.
    fn expr(&mut self, min_prec: u8) -> Result<Expr, ParseError> {
        if let Tok::Ident(s) = self.peek()
            && word_binop(s).is_some()
        {
            return Err(self.unexpected());
        }
        let mut lhs = self.unary()?;
        while let Some(op) = self.binop() {
            let prec = op.precedence();
            if prec < min_prec {
                break;
            }
            let op_tok = self.next();
            let mut return_bool = false;
            if self.peek_ident("bool") {
                self.next();
                return_bool = true;
            }
            let matching = self.vector_matching()?;
            let next_min = if op == BinOp::Pow { prec } else { prec + 1 };
            let rhs = self.expr(next_min)?;
            lhs = self.binary(op, lhs, rhs, return_bool, matching, op_tok.start)?;
        }
        Ok(lhs)
    }

    /// `on(…)` / `ignoring(…)`, then `group_left(…)` / `group_right(…)` (the label list optional).
    fn vector_matching(&mut self) -> Result<Option<VectorMatching>, ParseError> {
        if !(self.peek_ident("on") || self.peek_ident("ignoring")) {
            return Ok(None);
        }
        let on = self.peek_ident("on");
        self.next();
        let labels = self.label_list()?;
        let mut m = VectorMatching {
            on,
            labels,
            ..VectorMatching::default()
        };
        if self.peek_ident("group_left") || self.peek_ident("group_right") {
            m.card = if self.peek_ident("group_left") {
                Cardinality::ManyToOne
            } else {
                Cardinality::OneToMany
            };
            self.next();
            if *self.peek() == Tok::LParen {
                m.include = self.label_list()?;
            }
        }
        Ok(Some(m))
    }

    fn binary(
        &self,
        op: BinOp,
        lhs: Expr,
        rhs: Expr,
        return_bool: bool,
        mut matching: Option<VectorMatching>,
        op_pos: usize,
    ) -> Result<Expr, ParseError> {
        let (lt, rt) = (lhs.value_type(), rhs.value_type());
        let pos = PosRange {
            start: lhs.pos.start,
            end: rhs.pos.end,
        };
        if return_bool && !op.is_comparison() {
            return Err(ParseError::new(
                op_pos,
                "bool modifier can only be used on comparison operators",
            ));
        }
        if op.is_comparison() && !return_bool && lt == ValueType::Scalar && rt == ValueType::Scalar
        {
            return Err(ParseError::new(
                op_pos,
                "comparisons between scalars must use BOOL modifier",
            ));
        }
        if let Some(m) = &mut matching {
            if op.is_set() && m.card == Cardinality::OneToOne {
                m.card = Cardinality::ManyToMany;
            }
            if m.on
                && let Some(l) = m.labels.iter().find(|l| m.include.contains(l))
            {
                return Err(ParseError::new(
                    op_pos,
                    format!("label {l:?} must not occur in ON and GROUP clause at once"),
                ));
            }
        }
        for (t, e) in [(lt, &lhs), (rt, &rhs)] {
            if t != ValueType::Scalar && t != ValueType::Vector {
                return Err(ParseError::new(
                    e.pos.start,
                    "binary expression must contain only scalar and instant vector types",
                ));
            }
        }
        if lt != ValueType::Vector || rt != ValueType::Vector {
            if matching.as_ref().is_some_and(|m| !m.labels.is_empty()) {
                return Err(ParseError::new(
                    pos.start,
                    "vector matching only allowed between instant vectors",
                ));
            }
            matching = None;
        } else if op.is_set()
            && let Some(m) = &matching
            && matches!(m.card, Cardinality::ManyToOne | Cardinality::OneToMany)
        {
            return Err(ParseError::new(
                pos.start,
                format!("no grouping allowed for {:?} operation", op.name()),
            ));
        }
        if op.is_set() && (lt == ValueType::Scalar || rt == ValueType::Scalar) {
            return Err(ParseError::new(
                pos.start,
                format!(
                    "set operator {:?} not allowed in binary scalar expression",
                    op.name()
                ),
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

    /// Range selectors, subqueries, `offset` and `@` after a primary expression.
    fn postfix(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.primary()?;
        loop {
            match self.peek() {
                Tok::LBracket => e = self.range_or_subquery(e)?,
                Tok::Ident(s) if s.eq_ignore_ascii_case("offset") => self.offset(&mut e)?,
                Tok::At => self.at(&mut e)?,
                _ => return Ok(e),
            }
        }
    }

    fn range_or_subquery(&mut self, e: Expr) -> Result<Expr, ParseError> {
        let lb = self.next();
        let range_ms = match self.peek() {
            Tok::Duration(ms) => *ms,
            _ => return Err(self.unexpected_in("range selector")),
        };
        self.next();
        if *self.peek() == Tok::Colon {
            self.next();
            let step_ms = match self.peek() {
                Tok::Duration(ms) => {
                    let ms = *ms;
                    self.next();
                    Some(ms)
                }
                _ => None,
            };
            let rb = self.expect(Tok::RBracket, "subquery selector")?;
            if e.value_type() != ValueType::Vector {
                return Err(ParseError::new(
                    e.pos.start,
                    format!(
                        "subquery is only allowed on instant vector, got {} instead",
                        e.value_type().name()
                    ),
                ));
            }
            if range_ms <= 0 {
                return Err(ParseError::new(lb.start, "range must be greater than 0"));
            }
            if step_ms == Some(0) {
                return Err(ParseError::new(lb.start, "step must be greater than 0"));
            }
            let start = e.pos.start;
            return Ok(Expr {
                kind: ExprKind::Subquery {
                    expr: Box::new(e),
                    range_ms,
                    step_ms,
                    offset_ms: 0,
                    at: None,
                },
                pos: PosRange { start, end: rb.end },
            });
        }
        let rb = self.expect(Tok::RBracket, "range selector")?;
        let ExprKind::Selector(sel) = e.kind else {
            return Err(ParseError::new(
                lb.start,
                "ranges only allowed for vector selectors",
            ));
        };
        if sel.offset_ms != 0 || sel.at.is_some() {
            return Err(ParseError::new(
                lb.start,
                "no offset or @ modifiers allowed before range",
            ));
        }
        if range_ms <= 0 {
            return Err(ParseError::new(lb.start, "range must be greater than 0"));
        }
        Ok(Expr {
            kind: ExprKind::Matrix { sel, range_ms },
            pos: PosRange {
                start: e.pos.start,
                end: rb.end,
            },
        })
    }

    /// The offset and `@` slots of a selector, range selector or subquery.
    fn modifiers(e: &mut Expr) -> Option<(&mut i64, &mut Option<At>)> {
        match &mut e.kind {
            ExprKind::Selector(s) | ExprKind::Matrix { sel: s, .. } => {
                Some((&mut s.offset_ms, &mut s.at))
            }
            ExprKind::Subquery { offset_ms, at, .. } => Some((offset_ms, at)),
            _ => None,
        }
    }

    fn offset(&mut self, e: &mut Expr) -> Result<(), ParseError> {
        let kw = self.next();
        let neg = match self.peek() {
            Tok::Sub => {
                self.next();
                true
            }
            Tok::Add => {
                self.next();
                false
            }
            _ => false,
        };
        let ms = match self.peek() {
            Tok::Duration(ms) => *ms,
            _ => return Err(self.unexpected_in("offset")),
        };
        let dur = self.next();
        let Some((offset, _)) = Self::modifiers(e) else {
            return Err(ParseError::new(
                kw.start,
                "offset modifier must be preceded by an instant vector selector or range vector selector or a subquery",
            ));
        };
        if *offset != 0 {
            return Err(ParseError::new(
                kw.start,
                "offset may not be set multiple times",
            ));
        }
        *offset = if neg { -ms } else { ms };
        e.pos.end = dur.end;
        Ok(())
    }

    fn at(&mut self, e: &mut Expr) -> Result<(), ParseError> {
        let at_tok = self.next();
        let t = self.tok().clone();
        let value = match &t.tok {
            Tok::Ident(s) if s == "start" || s == "end" => {
                let which = if s == "start" { At::Start } else { At::End };
                self.next();
                self.expect(Tok::LParen, "@ modifier")?;
                self.expect(Tok::RParen, "@ modifier")?;
                which
            }
            Tok::Number(_) | Tok::Sub | Tok::Add => {
                let neg = t.tok == Tok::Sub;
                if matches!(t.tok, Tok::Sub | Tok::Add) {
                    self.next();
                }
                let Tok::Number(n) = *self.peek() else {
                    return Err(self.unexpected_in("@"));
                };
                self.next();
                let f = if neg { -n } else { n };
                if !f.is_finite() || f >= i64::MAX as f64 / 1000.0 || f <= i64::MIN as f64 / 1000.0
                {
                    return Err(ParseError::new(
                        t.start,
                        format!("timestamp out of bounds for @ modifier: {f}"),
                    ));
                }
                At::Time(seconds_to_ms(f))
            }
            _ => return Err(self.unexpected_in("@")),
        };
        let end = self.prev_end();
        let Some((_, at)) = Self::modifiers(e) else {
            return Err(ParseError::new(
                at_tok.start,
                "@ modifier must be preceded by an instant vector selector or range vector selector or a subquery",
            ));
        };
        if at.is_some() {
            return Err(ParseError::new(
                at_tok.start,
                "@ <timestamp> may not be set multiple times",
            ));
        }
        *at = Some(value);
        e.pos.end = end;
        Ok(())
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let t = self.tok().clone();
        let here = PosRange {
            start: t.start,
            end: t.end,
        };
        match &t.tok {
            Tok::Number(n) => {
                self.next();
                Ok(Expr {
                    kind: ExprKind::Number(*n),
                    pos: here,
                })
            }
            Tok::Str(s) => {
                self.next();
                Ok(Expr {
                    kind: ExprKind::String(s.clone()),
                    pos: here,
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
                        pos: here,
                    });
                }
                let call_follows = *self.peek_at(1) == Tok::LParen;
                let grouping_follows = matches!(self.peek_at(1), Tok::Ident(s)
                    if s.eq_ignore_ascii_case("by") || s.eq_ignore_ascii_case("without"));
                if let Some(op) = AggOp::from_name(name) {
                    return self.aggregate(op, t.start);
                }
                if EXPERIMENTAL_AGGREGATIONS.contains(&lower.as_str())
                    && (call_follows || grouping_follows)
                {
                    return Err(ParseError::new(
                        t.start,
                        format!(
                            "aggregation {lower:?} is not supported by surge (experimental in Prometheus 3)"
                        ),
                    ));
                }
                if is_keyword(name) {
                    return Err(self.unexpected());
                }
                if call_follows {
                    return self.call(name.clone(), t.start);
                }
                self.next();
                self.selector(Some(name.clone()), t.start)
            }
            Tok::Eof => Err(ParseError::new(t.start, "unexpected end of input")),
            _ => Err(self.unexpected()),
        }
    }

    /// `(a, b, "k.8s")`: a grouping or matching label list; quoted names may be any UTF-8 (Prometheus 3).
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
                }
                Tok::Str(s) if !s.is_empty() => {
                    self.next();
                    out.push(s);
                }
                _ => return Err(self.unexpected_in("grouping opts")),
            }
            match self.peek() {
                Tok::Comma => {
                    self.next();
                }
                Tok::RParen => {}
                _ => return Err(self.unexpected_in("grouping opts")),
            }
        }
    }

    fn grouping(&mut self) -> Result<Option<(bool, Vec<String>)>, ParseError> {
        if self.peek_ident("by") || self.peek_ident("without") {
            let without = self.peek_ident("without");
            self.next();
            Ok(Some((without, self.label_list()?)))
        } else {
            Ok(None)
        }
    }

    /// `(a, b, …)` of a call or aggregation; the opening parenthesis is next.
    fn arguments(&mut self, ctx: &str) -> Result<(Vec<Expr>, Token), ParseError> {
        let lp = self.expect(Tok::LParen, ctx)?;
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
        Ok((args, self.next()))
    }

    fn aggregate(&mut self, op: AggOp, start: usize) -> Result<Expr, ParseError> {
        self.next();
        let mut grouping = self.grouping()?;
        let (mut args, rp) = self.arguments("aggregation")?;
        let mut end = rp.end;
        if args.is_empty() {
            return Err(ParseError::new(
                rp.start,
                "no arguments for aggregate expression provided",
            ));
        }
        if let Some(g) = self.grouping()? {
            if grouping.is_some() {
                return Err(ParseError::new(
                    start,
                    "aggregation has two grouping clauses",
                ));
            }
            grouping = Some(g);
            end = self.prev_end();
        }
        let pos = PosRange { start, end };
        let want = if op.param_type().is_some() { 2 } else { 1 };
        if args.len() != want {
            return Err(ParseError::new(
                start,
                format!(
                    "wrong number of arguments for aggregate expression provided, expected {want}, got {}",
                    args.len()
                ),
            ));
        }
        let arg = args
            .pop()
            .ok_or_else(|| ParseError::new(start, "no arguments"))?;
        let param = args.pop();
        if arg.value_type() != ValueType::Vector {
            return Err(ParseError::new(
                arg.pos.start,
                format!(
                    "expected type instant vector in aggregation expression, got {}",
                    arg.value_type().name()
                ),
            ));
        }
        if let (Some(p), Some(want)) = (&param, op.param_type())
            && p.value_type() != want
        {
            return Err(ParseError::new(
                p.pos.start,
                format!(
                    "expected type {} in aggregation parameter, got {}",
                    want.name(),
                    p.value_type().name()
                ),
            ));
        }
        let (without, grouping) = grouping.unwrap_or((false, Vec::new()));
        Ok(Expr {
            kind: ExprKind::Aggregate {
                op,
                expr: Box::new(arg),
                param: param.map(Box::new),
                grouping,
                without,
            },
            pos,
        })
    }

    fn call(&mut self, name: String, start: usize) -> Result<Expr, ParseError> {
        let func = match Func::from_name(&name) {
            Some(f) => f,
            None if EXPERIMENTAL_FUNCTIONS.contains(&name.as_str()) => {
                return Err(ParseError::new(
                    start,
                    format!(
                        "function {name:?} is not supported by surge (experimental in Prometheus 3)"
                    ),
                ));
            }
            None => {
                return Err(ParseError::new(
                    start,
                    format!("unknown function with name {name:?}"),
                ));
            }
        };
        self.next();
        let (args, rp) = self.arguments("function call")?;
        let pos = PosRange { start, end: rp.end };
        let (want, _) = func.signature();
        let (min, max) = (
            func.min_args(),
            (!func.repeats_last()).then_some(want.len()),
        );
        let err_pos = pos.end.saturating_sub(1).max(start);
        if min == want.len() && max == Some(want.len()) {
            if args.len() != want.len() {
                return Err(ParseError::new(
                    err_pos,
                    format!(
                        "expected {} argument(s) in call to {:?}, got {}",
                        want.len(),
                        func.name(),
                        args.len()
                    ),
                ));
            }
        } else if args.len() < min {
            return Err(ParseError::new(
                err_pos,
                format!(
                    "expected at least {min} argument(s) in call to {:?}, got {}",
                    func.name(),
                    args.len()
                ),
            ));
        } else if let Some(max) = max
            && args.len() > max
        {
            return Err(ParseError::new(
                err_pos,
                format!(
                    "expected at most {max} argument(s) in call to {:?}, got {}",
                    func.name(),
                    args.len()
                ),
            ));
        }
        for (i, a) in args.iter().enumerate() {
            let Some(w) = want.get(i.min(want.len().saturating_sub(1))) else {
                break;
            };
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

    /// `name{…}` or `{…}`: inside the braces, `label op "value"` pairs, where the label may be quoted, and
    /// (Prometheus 3) a lone quoted string naming the metric.
    fn selector(&mut self, name: Option<String>, start: usize) -> Result<Expr, ParseError> {
        let mut matchers = Vec::new();
        let mut name = name;
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
                    Tok::Str(s) => s.clone(),
                    Tok::Eof => {
                        return Err(ParseError::new(
                            t.start,
                            "unexpected end of input inside braces",
                        ));
                    }
                    _ => return Err(self.unexpected_in("label matching")),
                };
                self.next();
                // `{"my.metric"}`: a quoted metric name on its own.
                if matches!(t.tok, Tok::Str(_)) && matches!(self.peek(), Tok::Comma | Tok::RBrace) {
                    if name.is_some() {
                        return Err(ParseError::new(
                            t.start,
                            "metric name must not be set twice",
                        ));
                    }
                    matchers.push(
                        Matcher::new(MatchOp::Equal, METRIC_NAME, label.clone())
                            .map_err(|e| ParseError::new(t.start, e.to_string()))?,
                    );
                    name = Some(label);
                    self.after_matcher(&lb)?;
                    continue;
                }
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
                self.after_matcher(&lb)?;
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
                at: None,
            }),
            pos: PosRange { start, end },
        })
    }

    /// After one matcher inside braces: a comma, or the closing brace (left for the caller).
    fn after_matcher(&mut self, lb: &Token) -> Result<(), ParseError> {
        match self.peek() {
            Tok::Comma => {
                self.next();
                Ok(())
            }
            Tok::RBrace => Ok(()),
            Tok::Eof => Err(ParseError::new(
                lb.start,
                "unexpected end of input inside braces",
            )),
            _ => Err(self.unexpected_in("label matching")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `check(query, expected)`: the expected text is the S-expression rendering below, or the error.
    fn check(q: &str, want: &str) {
        assert_eq!(render(q), want, "query: {q}");
    }

    fn render(q: &str) -> String {
        match parse(q) {
            Ok(e) => sexp(&e),
            Err(e) => e.to_string(),
        }
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
                param,
                grouping,
                without,
            } => format!(
                "({op:?}{p} {} {} {}{})",
                if *without { "without" } else { "by" },
                grouping.join(","),
                param
                    .as_ref()
                    .map(|e| format!("{} ", sexp(e)))
                    .unwrap_or_default(),
                sexp(expr)
            ),
            ExprKind::Subquery {
                expr,
                range_ms,
                step_ms,
                offset_ms,
                at,
            } => format!(
                "(subquery{p} {} [{range_ms}ms:{step_ms:?}] offset {offset_ms}ms @ {at:?})",
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
                        " {}({}){}",
                        if m.on { "on" } else { "ignoring" },
                        m.labels.join(","),
                        match m.card {
                            Cardinality::ManyToOne =>
                                format!(" group_left({})", m.include.join(",")),
                            Cardinality::OneToMany =>
                                format!(" group_right({})", m.include.join(",")),
                            _ => String::new(),
                        }
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
        let mut off = if s.offset_ms != 0 {
            format!(" offset {}ms", s.offset_ms)
        } else {
            String::new()
        };
        if let Some(at) = s.at {
            off.push_str(&format!(" @ {at:?}"));
        }
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

    /// The syntax beyond the original subset; one row per construct.
    #[test]
    fn parses_the_rest_of_promql() {
        let table = [
            // `or` binds loosest, then `and`/`unless`, then comparisons.
            (
                "a or b and c",
                "(Or@0..12 {__name__=\"a\"}@0..1 (And@5..12 {__name__=\"b\"}@5..6 {__name__=\"c\"}@11..12))",
            ),
            (
                "a unless b or c",
                "(Or@0..15 (Unless@0..10 {__name__=\"a\"}@0..1 {__name__=\"b\"}@9..10) {__name__=\"c\"}@14..15)",
            ),
            (
                "a > 1 AND b",
                "(And@0..11 (Gt@0..5 {__name__=\"a\"}@0..1 1@4..5) {__name__=\"b\"}@10..11)",
            ),
            (
                "a * on(x) group_left(y, z) b",
                "(Mul on(x) group_left(y,z)@0..28 {__name__=\"a\"}@0..1 {__name__=\"b\"}@27..28)",
            ),
            (
                "a / ignoring(x) group_right b",
                "(Div ignoring(x) group_right()@0..29 {__name__=\"a\"}@0..1 {__name__=\"b\"}@28..29)",
            ),
            (
                "a atan2 b",
                "(Atan2@0..9 {__name__=\"a\"}@0..1 {__name__=\"b\"}@8..9)",
            ),
            (
                "topk by (job) (3, x)",
                "(Topk@0..20 by job 3@15..16 {__name__=\"x\"}@18..19)",
            ),
            (
                "count_values(\"v\", x)",
                "(CountValues@0..20 by  \"v\"@13..16 {__name__=\"x\"}@18..19)",
            ),
            ("x offset -5m", "{__name__=\"x\"} offset -300000ms@0..12"),
            (
                "x @ 1700000000.5",
                "{__name__=\"x\"} @ Time(1700000000500)@0..16",
            ),
            (
                "x[1m] @ end() offset 1m",
                "{__name__=\"x\"} offset 60000ms @ End@0..23[60000ms]",
            ),
            (
                "rate(x[1m])[5m:30s]",
                "(subquery@0..19 (rate@0..11 {__name__=\"x\"}@5..10[60000ms]) [300000ms:Some(30000)] offset 0ms @ None)",
            ),
            (
                "x[5m:] offset 1m @ start()",
                "(subquery@0..26 {__name__=\"x\"}@0..1 [300000ms:None] offset 60000ms @ Some(Start))",
            ),
            // Prometheus 3's quoted UTF-8 names.
            (
                "{\"my.metric\", \"k.8s\"=\"v\"}",
                "{__name__=\"my.metric\",k.8s=\"v\"}@0..25",
            ),
            (
                "sum by (\"k.8s\") ({\"my.metric\"})",
                "(Sum@0..31 by k.8s {__name__=\"my.metric\"}@17..30)",
            ),
            ("day_of_week()", "(day_of_week@0..13 )"),
            (
                "label_join(x, \"d\", \",\", \"a\", \"b\", \"c\")",
                "(label_join@0..38 {__name__=\"x\"}@11..12 \"d\"@14..17 \",\"@19..22 \"a\"@24..27 \"b\"@29..32 \"c\"@34..37)",
            ),
        ];
        let bad: Vec<String> = table
            .iter()
            .filter(|(q, want)| render(q) != *want)
            .map(|(q, want)| format!("{q}\n  got  {}\n  want {want}", render(q)))
            .collect();
        assert!(bad.is_empty(), "\n{}", bad.join("\n"));
    }

    #[test]
    fn refusals_are_phrased_like_prometheus_or_say_not_supported() {
        let table = [
            (
                "sort_by_label(x, \"a\")",
                "1:1: parse error: function \"sort_by_label\" is not supported by surge (experimental in Prometheus 3)",
            ),
            (
                "limitk(2, x)",
                "1:1: parse error: aggregation \"limitk\" is not supported by surge (experimental in Prometheus 3)",
            ),
            (
                "nosuchfunc(x)",
                "1:1: parse error: unknown function with name \"nosuchfunc\"",
            ),
            (
                "x and 1",
                "1:1: parse error: set operator \"and\" not allowed in binary scalar expression",
            ),
            (
                "x and on(a) group_left y",
                "1:1: parse error: no grouping allowed for \"and\" operation",
            ),
            (
                "x + on(a) group_left(a) y",
                "1:3: parse error: label \"a\" must not occur in ON and GROUP clause at once",
            ),
            (
                "topk(x, y)",
                "1:6: parse error: expected type scalar in aggregation parameter, got instant vector",
            ),
            (
                "count_values(1, y)",
                "1:14: parse error: expected type string in aggregation parameter, got scalar",
            ),
            (
                "sum(1, y)",
                "1:1: parse error: wrong number of arguments for aggregate expression provided, expected 1, got 2",
            ),
            (
                "sum(x) offset 1m",
                "1:8: parse error: offset modifier must be preceded by an instant vector selector or range vector selector or a subquery",
            ),
            (
                "x @ 1 @ 2",
                "1:7: parse error: @ <timestamp> may not be set multiple times",
            ),
            (
                "x[1m][5m:]",
                "1:1: parse error: subquery is only allowed on instant vector, got range vector instead",
            ),
            (
                "round(x, 1, 2)",
                "1:14: parse error: expected at most 2 argument(s) in call to \"round\", got 3",
            ),
            (
                "label_join(x)",
                "1:13: parse error: expected at least 3 argument(s) in call to \"label_join\", got 1",
            ),
            (
                "{\"a.b\", __name__=\"c\"}",
                "1:9: parse error: metric name must not be set twice",
            ),
        ];
        let bad: Vec<String> = table
            .iter()
            .filter(|(q, want)| render(q) != *want)
            .map(|(q, want)| format!("{q}\n  got  {}\n  want {want}", render(q)))
            .collect();
        assert!(bad.is_empty(), "\n{}", bad.join("\n"));
    }
}
