//! Validating shard specs into a [`Topology`]: names, weights, endpoints, passwords, and
//! (feature `sentinel`) Sentinel sources.

use std::collections::{HashMap, HashSet};

use super::endpoint::{redact_url, Endpoint};
#[cfg(feature = "sentinel")]
use super::SentinelSource;
use super::{secret, validate_name, Shard, ShardName, ShardSpec, Topology, MAX_WEIGHT};
use crate::error::ConfigError;

/// Validates `specs` and appends them to `shards` (already valid).
pub(super) fn extend(
    mut shards: Vec<Shard>,
    specs: Vec<ShardSpec>,
) -> Result<Topology, ConfigError> {
    if shards.is_empty() && specs.is_empty() {
        return Err(ConfigError::EmptyTopology);
    }
    let mut names: HashSet<String> = shards.iter().map(|s| s.name.to_string()).collect();
    let mut endpoints: HashMap<(String, u16, i64), String> = shards
        .iter()
        .flat_map(|s| {
            s.primary
                .iter()
                .chain(&s.replicas)
                .map(|ep| (ep.identity(), s.name.to_string()))
        })
        .collect();
    shards.reserve(specs.len());
    for spec in specs {
        validate_name(&spec.name)?;
        if !names.insert(spec.name.clone()) {
            return Err(ConfigError::DuplicateShardName(spec.name));
        }
        if spec.weight == 0 {
            return Err(ConfigError::ZeroWeight { shard: spec.name });
        }
        if spec.weight > MAX_WEIGHT {
            return Err(ConfigError::InvalidValue {
                field: format!("shards.{}.weight", spec.name),
                reason: format!("{} is above the maximum of {MAX_WEIGHT}", spec.weight),
            });
        }
        #[cfg(feature = "sentinel")]
        if let Some(sentinel) = &spec.sentinel {
            if !spec.primary.is_empty() || !spec.replicas.is_empty() {
                return Err(ConfigError::InvalidValue {
                    field: format!("shards.{}.sentinel", spec.name),
                    reason: "a Sentinel-managed shard lists no `primary` or `replicas`: \
                             its sentinels name them"
                        .into(),
                });
            }
            let password = secret::read_password(&spec)?;
            let source = SentinelSource::new(&spec.name, sentinel, password)?;
            shards.push(Shard {
                name: ShardName::from(spec.name.as_str()),
                weight: spec.weight,
                primary: None,
                replicas: Vec::new(),
                sentinel: Some(source),
            });
            continue;
        }
        if spec.primary.is_empty() {
            return Err(ConfigError::InvalidValue {
                field: format!("shards.{}.primary", spec.name),
                reason: "is missing (give a primary URL, or a `sentinel` with feature \
                         `sentinel`)"
                    .into(),
            });
        }
        let parse = |raw: &str| {
            Endpoint::parse(raw).map_err(|reason| ConfigError::InvalidUrl {
                shard: spec.name.clone(),
                url: redact_url(raw),
                reason,
            })
        };
        let mut primary = parse(&spec.primary)?;
        let mut replicas = spec
            .replicas
            .iter()
            .map(|r| parse(r))
            .collect::<Result<Vec<_>, _>>()?;
        if !spec.allow_mixed_tls {
            let tls = primary.is_tls();
            if let Some(other) = replicas.iter().find(|r| r.is_tls() != tls) {
                return Err(ConfigError::InvalidValue {
                    field: format!("shards.{}.allow_mixed_tls", spec.name),
                    reason: format!(
                        "the primary {} is {} but the replica {} is {}; set \
                         `allow_mixed_tls = true` if that is meant",
                        primary.label(),
                        if tls { "rediss://" } else { "redis://" },
                        other.label(),
                        if tls { "redis://" } else { "rediss://" },
                    ),
                });
            }
        }
        if let Some(password) = secret::read_password(&spec)? {
            let set = |ep: Endpoint| -> Result<Endpoint, ConfigError> {
                match ep.has_password() {
                    false => Ok(ep.with_password(&password)),
                    true if spec.password_from_defaults => Ok(ep),
                    true => Err(ConfigError::InvalidValue {
                        field: format!("shards.{}.password_env", spec.name),
                        reason: format!(
                            "the URL of {} has a password too; give it in one place",
                            ep.label()
                        ),
                    }),
                }
            };
            primary = set(primary)?;
            replicas = replicas.into_iter().map(set).collect::<Result<_, _>>()?;
        }
        for ep in std::iter::once(&primary).chain(replicas.iter()) {
            if let Some(first) = endpoints.insert(ep.identity(), spec.name.clone()) {
                return Err(ConfigError::DuplicateEndpoint {
                    endpoint: ep.label(),
                    first,
                    second: spec.name.clone(),
                });
            }
        }
        shards.push(Shard {
            name: ShardName::from(spec.name.as_str()),
            weight: spec.weight,
            primary: Some(primary),
            replicas,
            #[cfg(feature = "sentinel")]
            sentinel: None,
        });
    }
    Ok(Topology { shards })
}
