"""Sharded active replicas: every replica reconciles its share of the key space, fenced per
shard (docs/architecture.md, "Sharding")."""

from controller.runtime.sharding.coordinator import (
    CURRENT_SHARD,
    NOOP_SHARDING_METRICS,
    ShardCoordinator,
    ShardingMetrics,
)
from controller.runtime.sharding.keyspace import (
    assignment,
    rendezvous_owner,
    shard_of,
    shard_of_stored,
)

__all__ = [
    "CURRENT_SHARD",
    "NOOP_SHARDING_METRICS",
    "ShardCoordinator",
    "ShardingMetrics",
    "assignment",
    "rendezvous_owner",
    "shard_of",
    "shard_of_stored",
]
