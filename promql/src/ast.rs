//! The PromQL abstract syntax tree. Every node carries its byte range in the query.

use std::fmt;

use surge_store::cache::Matcher;

/// A parse error at byte `pos`, displayed as Prometheus does: `1:15: parse error: unexpected ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub pos: usize,
    pub msg: String,
    /// The query, for line/column computation in `Display`.
    pub query: String,
}

impl ParseError {
    pub fn new(pos: usize, msg: impl Into<String>) -> ParseError {
        ParseError {
            pos,
            msg: msg.into(),
            query: String::new(),
        }
    }

    /// (line, column), both 1-based; the column counts bytes from the last line break, as Prometheus does.
    pub fn line_col(&self) -> (usize, usize) {
        let pos = self.pos.min(self.query.len());
        let before = &self.query.as_bytes()[..pos];
        let line = 1 + before.iter().filter(|c| **c == b'\n').count();
        let last_break = before.iter().rposition(|c| *c == b'\n');
        let col = match last_break {
            Some(lb) => pos - lb,
            None => pos + 1,
        };
        (line, col)
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (line, col) = self.line_col();
        write!(f, "{line}:{col}: parse error: {}", self.msg)
    }
}

impl std::error::Error for ParseError {}

/// Byte range `[start, end)` of a node in the query text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PosRange {
    pub start: usize,
    pub end: usize,
}

/// The static type of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Scalar,
    Vector,
    Matrix,
    String,
}

impl ValueType {
    pub fn name(self) -> &'static str {
        match self {
            ValueType::Scalar => "scalar",
            ValueType::Vector => "instant vector",
            ValueType::Matrix => "range vector",
            ValueType::String => "string",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub pos: PosRange,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VectorSelector {
    /// The metric name written before the braces, if any (also present in `matchers` as `__name__=`).
    pub name: Option<String>,
    pub matchers: Vec<Matcher>,
    pub offset_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
}

impl AggOp {
    pub fn from_name(s: &str) -> Option<AggOp> {
        Some(match s.to_ascii_lowercase().as_str() {
            "sum" => AggOp::Sum,
            "avg" => AggOp::Avg,
            "min" => AggOp::Min,
            "max" => AggOp::Max,
            "count" => AggOp::Count,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
}

impl BinOp {
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le
        )
    }

    /// Precedence, higher binds tighter (as in Prometheus's grammar).
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le => 3,
            BinOp::Add | BinOp::Sub => 4,
            BinOp::Mul | BinOp::Div | BinOp::Mod => 5,
            BinOp::Pow => 6,
        }
    }
}

/// `on(...)` / `ignoring(...)` of a vector/vector operation (one-to-one only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorMatching {
    pub on: bool,
    pub labels: Vec<String>,
}

/// Functions of the supported subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Rate,
    Irate,
    Increase,
    Delta,
    Idelta,
    AvgOverTime,
    MaxOverTime,
    MinOverTime,
    LastOverTime,
    SumOverTime,
    CountOverTime,
    HistogramQuantile,
    Abs,
    Ceil,
    Floor,
    Sqrt,
    Exp,
    Ln,
    Log2,
    Log10,
    ClampMin,
    ClampMax,
    Clamp,
    Vector,
    Scalar,
    Time,
}

impl Func {
    pub fn from_name(s: &str) -> Option<Func> {
        Some(match s {
            "rate" => Func::Rate,
            "irate" => Func::Irate,
            "increase" => Func::Increase,
            "delta" => Func::Delta,
            "idelta" => Func::Idelta,
            "avg_over_time" => Func::AvgOverTime,
            "max_over_time" => Func::MaxOverTime,
            "min_over_time" => Func::MinOverTime,
            "last_over_time" => Func::LastOverTime,
            "sum_over_time" => Func::SumOverTime,
            "count_over_time" => Func::CountOverTime,
            "histogram_quantile" => Func::HistogramQuantile,
            "abs" => Func::Abs,
            "ceil" => Func::Ceil,
            "floor" => Func::Floor,
            "sqrt" => Func::Sqrt,
            "exp" => Func::Exp,
            "ln" => Func::Ln,
            "log2" => Func::Log2,
            "log10" => Func::Log10,
            "clamp_min" => Func::ClampMin,
            "clamp_max" => Func::ClampMax,
            "clamp" => Func::Clamp,
            "vector" => Func::Vector,
            "scalar" => Func::Scalar,
            "time" => Func::Time,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Func::Rate => "rate",
            Func::Irate => "irate",
            Func::Increase => "increase",
            Func::Delta => "delta",
            Func::Idelta => "idelta",
            Func::AvgOverTime => "avg_over_time",
            Func::MaxOverTime => "max_over_time",
            Func::MinOverTime => "min_over_time",
            Func::LastOverTime => "last_over_time",
            Func::SumOverTime => "sum_over_time",
            Func::CountOverTime => "count_over_time",
            Func::HistogramQuantile => "histogram_quantile",
            Func::Abs => "abs",
            Func::Ceil => "ceil",
            Func::Floor => "floor",
            Func::Sqrt => "sqrt",
            Func::Exp => "exp",
            Func::Ln => "ln",
            Func::Log2 => "log2",
            Func::Log10 => "log10",
            Func::ClampMin => "clamp_min",
            Func::ClampMax => "clamp_max",
            Func::Clamp => "clamp",
            Func::Vector => "vector",
            Func::Scalar => "scalar",
            Func::Time => "time",
        }
    }

    /// Argument types and return type.
    pub fn signature(self) -> (&'static [ValueType], ValueType) {
        use ValueType::*;
        match self {
            Func::Rate
            | Func::Irate
            | Func::Increase
            | Func::Delta
            | Func::Idelta
            | Func::AvgOverTime
            | Func::MaxOverTime
            | Func::MinOverTime
            | Func::LastOverTime
            | Func::SumOverTime
            | Func::CountOverTime => (&[Matrix], Vector),
            Func::HistogramQuantile => (&[Scalar, Vector], Vector),
            Func::Abs
            | Func::Ceil
            | Func::Floor
            | Func::Sqrt
            | Func::Exp
            | Func::Ln
            | Func::Log2
            | Func::Log10 => (&[Vector], Vector),
            Func::ClampMin | Func::ClampMax => (&[Vector, Scalar], Vector),
            Func::Clamp => (&[Vector, Scalar, Scalar], Vector),
            Func::Vector => (&[Scalar], Vector),
            Func::Scalar => (&[Vector], Scalar),
            Func::Time => (&[], Scalar),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Number(f64),
    String(String),
    Selector(VectorSelector),
    /// A range selector `sel[range]`.
    Matrix {
        sel: VectorSelector,
        range_ms: i64,
    },
    Call {
        func: Func,
        args: Vec<Expr>,
    },
    Aggregate {
        op: AggOp,
        expr: Box<Expr>,
        grouping: Vec<String>,
        without: bool,
    },
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
        return_bool: bool,
        matching: Option<VectorMatching>,
    },
    /// Unary minus (unary plus is dropped by the parser).
    Neg(Box<Expr>),
    Paren(Box<Expr>),
}

impl Expr {
    pub fn value_type(&self) -> ValueType {
        match &self.kind {
            ExprKind::Number(_) => ValueType::Scalar,
            ExprKind::String(_) => ValueType::String,
            ExprKind::Selector(_) => ValueType::Vector,
            ExprKind::Matrix { .. } => ValueType::Matrix,
            ExprKind::Call { func, .. } => func.signature().1,
            ExprKind::Aggregate { .. } => ValueType::Vector,
            ExprKind::Binary { lhs, rhs, .. } => {
                if lhs.value_type() == ValueType::Scalar && rhs.value_type() == ValueType::Scalar {
                    ValueType::Scalar
                } else {
                    ValueType::Vector
                }
            }
            ExprKind::Neg(e) | ExprKind::Paren(e) => e.value_type(),
        }
    }
}
