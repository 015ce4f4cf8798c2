//! The environment, read through a trait so parsing stays pure and tests never touch the process's
//! variables.

use std::collections::HashMap;

/// Where `${VAR}` references in a config find their values.
pub trait Env {
    /// The value of variable `name`, or `None` when it is not set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process's environment variables.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        // A value that is not valid UTF-8 cannot be put into a YAML document: treat it as unset.
        std::env::var(name).ok()
    }
}

/// An environment held in a map: for tests and for callers that assemble variables themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapEnv {
    vars: HashMap<String, String>,
}

impl MapEnv {
    pub fn new() -> Self {
        MapEnv::default()
    }

    /// Sets `name` to `value`, builder style.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }
}

impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for MapEnv {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        MapEnv {
            vars: iter
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
        }
    }
}

impl Env for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }
}
