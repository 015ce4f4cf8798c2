//! PromQL: lexer → parser (AST with byte positions) → evaluator over the sample store (`surge-store`), with
//! Prometheus 2.x semantics. The evaluator reads the store's series directly (zero-copy window decodes,
//! prefetching scans): it is the store's query layer, as Prometheus's `promql` is over its `storage`.
//!
//! Architecture invariant: no clock and no I/O; the evaluation time is an argument.

pub mod ast;
pub mod eval;
pub mod functions;
pub mod lexer;
pub mod options;
pub mod parser;
pub mod value;

pub use ast::{Expr, ParseError};
pub use eval::{Cancel, EvalError, EvalOptions, eval_instant, eval_range};
pub use options::QueryOptions;
pub use parser::{parse, parse_selector};
pub use value::{Metric, Point, RangeSeries, Value, VectorSample, format_timestamp, format_value};
