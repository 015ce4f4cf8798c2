//! The PromQL subset surge's scaling rules need: lexer → parser (AST with byte positions) → evaluator
//! over the series cache, with Prometheus 2.42 semantics.

pub mod ast;
pub mod eval;
pub mod functions;
pub mod lexer;
pub mod parser;
pub mod value;

pub use ast::{Expr, ParseError};
pub use eval::{EvalError, EvalOptions, eval_instant, eval_range};
pub use parser::{parse, parse_selector};
pub use value::{Metric, Point, RangeSeries, Value, VectorSample, format_timestamp, format_value};
