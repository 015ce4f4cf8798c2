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
    /// `offset` in milliseconds (negative for `offset -5m`).
    pub offset_ms: i64,
    /// The `@` modifier, if any.
    pub at: Option<At>,
}

/// The `@` modifier: a fixed evaluation time, or the start or end of the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// `@ 1700000000.5`, in milliseconds.
    Time(i64),
    /// `@ start()`
    Start,
    /// `@ end()`
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Group,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    Quantile,
    CountValues,
}

impl AggOp {
    pub fn from_name(s: &str) -> Option<AggOp> {
        Some(match s.to_ascii_lowercase().as_str() {
            "sum" => AggOp::Sum,
            "avg" => AggOp::Avg,
            "min" => AggOp::Min,
            "max" => AggOp::Max,
            "count" => AggOp::Count,
            "group" => AggOp::Group,
            "stddev" => AggOp::Stddev,
            "stdvar" => AggOp::Stdvar,
            "topk" => AggOp::Topk,
            "bottomk" => AggOp::Bottomk,
            "quantile" => AggOp::Quantile,
            "count_values" => AggOp::CountValues,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            AggOp::Sum => "sum",
            AggOp::Avg => "avg",
            AggOp::Min => "min",
            AggOp::Max => "max",
            AggOp::Count => "count",
            AggOp::Group => "group",
            AggOp::Stddev => "stddev",
            AggOp::Stdvar => "stdvar",
            AggOp::Topk => "topk",
            AggOp::Bottomk => "bottomk",
            AggOp::Quantile => "quantile",
            AggOp::CountValues => "count_values",
        }
    }

    /// The type of the aggregation's parameter, for those that take one (`topk(3, x)`).
    pub fn param_type(self) -> Option<ValueType> {
        match self {
            AggOp::Topk | AggOp::Bottomk | AggOp::Quantile => Some(ValueType::Scalar),
            AggOp::CountValues => Some(ValueType::String),
            _ => None,
        }
    }

    /// Whether a group's result is a fold of its elements' values in order (so `op(f(x[r]))` can be fed
    /// one series at a time without materializing the vector).
    pub fn is_streaming(self) -> bool {
        matches!(
            self,
            AggOp::Sum | AggOp::Avg | AggOp::Min | AggOp::Max | AggOp::Count
        )
    }
}

/// Aggregation names Prometheus 3 has behind its experimental-functions flag.
pub const EXPERIMENTAL_AGGREGATIONS: &[&str] = &["limitk", "limit_ratio"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl BinOp {
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le
        )
    }

    /// `and`, `or`, `unless`: many-to-many operators on label sets.
    pub fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }

    /// Precedence, higher binds tighter (as in Prometheus's grammar).
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And | BinOp::Unless => 2,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le => 3,
            BinOp::Add | BinOp::Sub => 4,
            BinOp::Mul | BinOp::Div | BinOp::Mod | BinOp::Atan2 => 5,
            BinOp::Pow => 6,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Pow => "^",
            BinOp::Atan2 => "atan2",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Gt => ">",
            BinOp::Lt => "<",
            BinOp::Ge => ">=",
            BinOp::Le => "<=",
            BinOp::And => "and",
            BinOp::Or => "or",
            BinOp::Unless => "unless",
        }
    }
}

/// Which side of a vector/vector operation may have several series per match group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cardinality {
    #[default]
    OneToOne,
    /// `group_left`: many on the left.
    ManyToOne,
    /// `group_right`: many on the right.
    OneToMany,
    /// The set operators.
    ManyToMany,
}

/// `on(...)` / `ignoring(...)` and `group_left(...)` / `group_right(...)` of a vector/vector operation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VectorMatching {
    pub on: bool,
    pub labels: Vec<String>,
    pub card: Cardinality,
    /// The "one" side's labels a `group_x(...)` copies into the result.
    pub include: Vec<String>,
}

/// PromQL functions: Prometheus 2.42's list (`promql/parser/functions.go`) plus Prometheus 3's
/// `double_exponential_smoothing` (the new name of `holt_winters`) and its native-histogram
/// `histogram_avg`, `histogram_stddev`, `histogram_stdvar`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Abs,
    Absent,
    AbsentOverTime,
    Acos,
    Acosh,
    Asin,
    Asinh,
    Atan,
    Atanh,
    AvgOverTime,
    Ceil,
    Changes,
    Clamp,
    ClampMax,
    ClampMin,
    Cos,
    Cosh,
    CountOverTime,
    DaysInMonth,
    DayOfMonth,
    DayOfWeek,
    DayOfYear,
    Deg,
    Delta,
    Deriv,
    Exp,
    Floor,
    HistogramAvg,
    HistogramCount,
    HistogramSum,
    HistogramFraction,
    HistogramStddev,
    HistogramStdvar,
    HistogramQuantile,
    HoltWinters,
    DoubleExponentialSmoothing,
    Hour,
    Idelta,
    Increase,
    Irate,
    LabelReplace,
    LabelJoin,
    LastOverTime,
    Ln,
    Log10,
    Log2,
    MaxOverTime,
    MinOverTime,
    Minute,
    Month,
    Pi,
    PredictLinear,
    PresentOverTime,
    QuantileOverTime,
    Rad,
    Rate,
    Resets,
    Round,
    Scalar,
    Sgn,
    Sin,
    Sinh,
    Sort,
    SortDesc,
    Sqrt,
    StddevOverTime,
    StdvarOverTime,
    SumOverTime,
    Tan,
    Tanh,
    Time,
    Timestamp,
    Vector,
    Year,
}

/// Every function, for name lookup.
const FUNCS: &[Func] = &[
    Func::Abs,
    Func::Absent,
    Func::AbsentOverTime,
    Func::Acos,
    Func::Acosh,
    Func::Asin,
    Func::Asinh,
    Func::Atan,
    Func::Atanh,
    Func::AvgOverTime,
    Func::Ceil,
    Func::Changes,
    Func::Clamp,
    Func::ClampMax,
    Func::ClampMin,
    Func::Cos,
    Func::Cosh,
    Func::CountOverTime,
    Func::DaysInMonth,
    Func::DayOfMonth,
    Func::DayOfWeek,
    Func::DayOfYear,
    Func::Deg,
    Func::Delta,
    Func::Deriv,
    Func::Exp,
    Func::Floor,
    Func::HistogramAvg,
    Func::HistogramCount,
    Func::HistogramSum,
    Func::HistogramFraction,
    Func::HistogramStddev,
    Func::HistogramStdvar,
    Func::HistogramQuantile,
    Func::HoltWinters,
    Func::DoubleExponentialSmoothing,
    Func::Hour,
    Func::Idelta,
    Func::Increase,
    Func::Irate,
    Func::LabelReplace,
    Func::LabelJoin,
    Func::LastOverTime,
    Func::Ln,
    Func::Log10,
    Func::Log2,
    Func::MaxOverTime,
    Func::MinOverTime,
    Func::Minute,
    Func::Month,
    Func::Pi,
    Func::PredictLinear,
    Func::PresentOverTime,
    Func::QuantileOverTime,
    Func::Rad,
    Func::Rate,
    Func::Resets,
    Func::Round,
    Func::Scalar,
    Func::Sgn,
    Func::Sin,
    Func::Sinh,
    Func::Sort,
    Func::SortDesc,
    Func::Sqrt,
    Func::StddevOverTime,
    Func::StdvarOverTime,
    Func::SumOverTime,
    Func::Tan,
    Func::Tanh,
    Func::Time,
    Func::Timestamp,
    Func::Vector,
    Func::Year,
];

/// Functions Prometheus 3 has only behind `--enable-feature=promql-experimental-functions`: surge answers
/// "not supported by surge" for them (never "unknown function").
pub const EXPERIMENTAL_FUNCTIONS: &[&str] = &[
    "sort_by_label",
    "sort_by_label_desc",
    "mad_over_time",
    "info",
    "first_over_time",
    "ts_of_first_over_time",
    "ts_of_last_over_time",
    "ts_of_max_over_time",
    "ts_of_min_over_time",
];

impl Func {
    pub fn from_name(s: &str) -> Option<Func> {
        FUNCS.iter().copied().find(|f| f.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Func::Abs => "abs",
            Func::Absent => "absent",
            Func::AbsentOverTime => "absent_over_time",
            Func::Acos => "acos",
            Func::Acosh => "acosh",
            Func::Asin => "asin",
            Func::Asinh => "asinh",
            Func::Atan => "atan",
            Func::Atanh => "atanh",
            Func::AvgOverTime => "avg_over_time",
            Func::Ceil => "ceil",
            Func::Changes => "changes",
            Func::Clamp => "clamp",
            Func::ClampMax => "clamp_max",
            Func::ClampMin => "clamp_min",
            Func::Cos => "cos",
            Func::Cosh => "cosh",
            Func::CountOverTime => "count_over_time",
            Func::DaysInMonth => "days_in_month",
            Func::DayOfMonth => "day_of_month",
            Func::DayOfWeek => "day_of_week",
            Func::DayOfYear => "day_of_year",
            Func::Deg => "deg",
            Func::Delta => "delta",
            Func::Deriv => "deriv",
            Func::Exp => "exp",
            Func::Floor => "floor",
            Func::HistogramAvg => "histogram_avg",
            Func::HistogramCount => "histogram_count",
            Func::HistogramSum => "histogram_sum",
            Func::HistogramFraction => "histogram_fraction",
            Func::HistogramStddev => "histogram_stddev",
            Func::HistogramStdvar => "histogram_stdvar",
            Func::HistogramQuantile => "histogram_quantile",
            Func::HoltWinters => "holt_winters",
            Func::DoubleExponentialSmoothing => "double_exponential_smoothing",
            Func::Hour => "hour",
            Func::Idelta => "idelta",
            Func::Increase => "increase",
            Func::Irate => "irate",
            Func::LabelReplace => "label_replace",
            Func::LabelJoin => "label_join",
            Func::LastOverTime => "last_over_time",
            Func::Ln => "ln",
            Func::Log10 => "log10",
            Func::Log2 => "log2",
            Func::MaxOverTime => "max_over_time",
            Func::MinOverTime => "min_over_time",
            Func::Minute => "minute",
            Func::Month => "month",
            Func::Pi => "pi",
            Func::PredictLinear => "predict_linear",
            Func::PresentOverTime => "present_over_time",
            Func::QuantileOverTime => "quantile_over_time",
            Func::Rad => "rad",
            Func::Rate => "rate",
            Func::Resets => "resets",
            Func::Round => "round",
            Func::Scalar => "scalar",
            Func::Sgn => "sgn",
            Func::Sin => "sin",
            Func::Sinh => "sinh",
            Func::Sort => "sort",
            Func::SortDesc => "sort_desc",
            Func::Sqrt => "sqrt",
            Func::StddevOverTime => "stddev_over_time",
            Func::StdvarOverTime => "stdvar_over_time",
            Func::SumOverTime => "sum_over_time",
            Func::Tan => "tan",
            Func::Tanh => "tanh",
            Func::Time => "time",
            Func::Timestamp => "timestamp",
            Func::Vector => "vector",
            Func::Year => "year",
        }
    }

    /// Argument types and return type. Variadic functions list every argument they can take; see
    /// [`Func::min_args`] and [`Func::repeats_last`].
    pub fn signature(self) -> (&'static [ValueType], ValueType) {
        use ValueType::*;
        match self {
            Func::AbsentOverTime
            | Func::AvgOverTime
            | Func::Changes
            | Func::CountOverTime
            | Func::Delta
            | Func::Deriv
            | Func::Idelta
            | Func::Increase
            | Func::Irate
            | Func::LastOverTime
            | Func::MaxOverTime
            | Func::MinOverTime
            | Func::PresentOverTime
            | Func::Rate
            | Func::Resets
            | Func::StddevOverTime
            | Func::StdvarOverTime
            | Func::SumOverTime => (&[Matrix], Vector),
            Func::QuantileOverTime => (&[Scalar, Matrix], Vector),
            Func::PredictLinear => (&[Matrix, Scalar], Vector),
            Func::HoltWinters | Func::DoubleExponentialSmoothing => {
                (&[Matrix, Scalar, Scalar], Vector)
            }
            Func::HistogramQuantile => (&[Scalar, Vector], Vector),
            Func::HistogramFraction => (&[Scalar, Scalar, Vector], Vector),
            Func::ClampMin | Func::ClampMax | Func::Round => (&[Vector, Scalar], Vector),
            Func::Clamp => (&[Vector, Scalar, Scalar], Vector),
            Func::LabelReplace => (&[Vector, String, String, String, String], Vector),
            Func::LabelJoin => (&[Vector, String, String, String], Vector),
            Func::Vector => (&[Scalar], Vector),
            Func::Scalar => (&[Vector], Scalar),
            Func::Time | Func::Pi => (&[], Scalar),
            _ => (&[Vector], Vector),
        }
    }

    /// The fewest arguments the function takes (the date functions and `round` have optional ones,
    /// `label_join` takes any number of source labels).
    pub fn min_args(self) -> usize {
        match self {
            Func::DaysInMonth
            | Func::DayOfMonth
            | Func::DayOfWeek
            | Func::DayOfYear
            | Func::Hour
            | Func::Minute
            | Func::Month
            | Func::Year => 0,
            Func::Round => 1,
            Func::LabelJoin => 3,
            f => f.signature().0.len(),
        }
    }

    /// Whether the last argument type repeats without bound (`label_join`'s source labels).
    pub fn repeats_last(self) -> bool {
        self == Func::LabelJoin
    }

    /// The index of the range-vector argument, for the functions over a window.
    pub fn matrix_arg(self) -> Option<usize> {
        self.signature()
            .0
            .iter()
            .position(|t| *t == ValueType::Matrix)
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
    /// A subquery `expr[range:step]` (`step` `None` for the default), with its own offset and `@`.
    Subquery {
        expr: Box<Expr>,
        range_ms: i64,
        step_ms: Option<i64>,
        offset_ms: i64,
        at: Option<At>,
    },
    Call {
        func: Func,
        args: Vec<Expr>,
    },
    Aggregate {
        op: AggOp,
        expr: Box<Expr>,
        /// `topk`'s k, `quantile`'s φ, `count_values`'s label name.
        param: Option<Box<Expr>>,
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
            ExprKind::Matrix { .. } | ExprKind::Subquery { .. } => ValueType::Matrix,
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

    /// The direct sub-expressions, in order (for walks over the tree).
    pub fn children(&self) -> Vec<&Expr> {
        match &self.kind {
            ExprKind::Number(_)
            | ExprKind::String(_)
            | ExprKind::Selector(_)
            | ExprKind::Matrix { .. } => Vec::new(),
            ExprKind::Subquery { expr, .. } | ExprKind::Neg(expr) | ExprKind::Paren(expr) => {
                vec![expr]
            }
            ExprKind::Call { args, .. } => args.iter().collect(),
            ExprKind::Aggregate { expr, param, .. } => {
                param.iter().map(|p| &**p).chain([&**expr]).collect()
            }
            ExprKind::Binary { lhs, rhs, .. } => vec![lhs, rhs],
        }
    }
}
