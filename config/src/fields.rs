//! Serde helpers for field types from other crates, with error messages that carry the input.

/// `Tier` as `critical` or `standard`.
pub(crate) mod tier {
    use std::fmt;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use surge_model::Tier;

    pub(crate) fn serialize<S: Serializer>(t: &Tier, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(t.as_str())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Tier, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Tier;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("critical or standard")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Tier, E> {
                match v {
                    "critical" => Ok(Tier::Critical),
                    "standard" => Ok(Tier::Standard),
                    _ => Err(E::custom(format_args!(
                        "{v:?} is not a tier (expected critical or standard)"
                    ))),
                }
            }
        }
        d.deserialize_str(V)
    }
}

/// `NameValidationScheme` as `utf8` or `legacy`.
pub(crate) mod name_validation {
    use serde::de::{self, Deserialize};
    use serde::{Deserializer, Serializer};
    use surge_model::NameValidationScheme;

    pub(crate) fn serialize<S: Serializer>(
        v: &NameValidationScheme,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_str())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<NameValidationScheme, D::Error> {
        let v = String::deserialize(d)?;
        v.parse().map_err(|_| {
            de::Error::custom(format_args!(
                "{v:?} is not a name validation scheme (expected utf8 or legacy)"
            ))
        })
    }
}

/// An optional `EscapingScheme` as `allow-utf-8`, `underscores`, `dots` or `values`.
pub(crate) mod escaping {
    use serde::de::{self, Deserialize};
    use serde::{Deserializer, Serializer};
    use surge_model::EscapingScheme;

    pub(crate) fn serialize<S: Serializer>(
        v: &Option<EscapingScheme>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(v.as_str()),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<EscapingScheme>, D::Error> {
        let v = String::deserialize(d)?;
        v.parse().map(Some).map_err(|_| {
            de::Error::custom(format_args!(
                "{v:?} is not a name escaping scheme (expected allow-utf-8, underscores, dots or values)"
            ))
        })
    }
}

/// `SocketAddr` as `ip:port`.
pub(crate) mod socket_addr {
    use std::fmt;
    use std::net::SocketAddr;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(a: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(a)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SocketAddr;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an address such as 0.0.0.0:9092")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SocketAddr, E> {
                v.parse().map_err(|_| {
                    E::custom(format_args!(
                        "{v:?} is not a listen address (e.g. 0.0.0.0:9092, [::]:9092, 127.0.0.1:9092)"
                    ))
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// Label maps whose values may be written as YAML numbers or booleans (`{port: 8080}`), which become
/// their text, as Prometheus reads them.
pub(crate) mod label_map {
    use std::collections::BTreeMap;
    use std::fmt;

    use serde::de::{self, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        m: &BTreeMap<String, String>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        m.serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, String>, D::Error> {
        let m = BTreeMap::<String, LabelValue>::deserialize(d)?;
        Ok(m.into_iter().map(|(k, v)| (k, v.0)).collect())
    }

    struct LabelValue(String);

    impl<'de> Deserialize<'de> for LabelValue {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = LabelValue;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a label value (a string)")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<LabelValue, E> {
                    Ok(LabelValue(v.to_owned()))
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<LabelValue, E> {
                    Ok(LabelValue(v.to_string()))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<LabelValue, E> {
                    Ok(LabelValue(v.to_string()))
                }
                fn visit_f64<E: de::Error>(self, v: f64) -> Result<LabelValue, E> {
                    Ok(LabelValue(v.to_string()))
                }
                fn visit_bool<E: de::Error>(self, v: bool) -> Result<LabelValue, E> {
                    Ok(LabelValue(v.to_string()))
                }
            }
            d.deserialize_any(V)
        }
    }
}
