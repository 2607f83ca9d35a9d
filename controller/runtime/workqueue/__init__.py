"""Client-go-style work queues: dedup, per-item exclusivity, delays, rate-limited retries and
two priorities (user changes before background work).

Generic over the item type (string keys in practice); knows nothing about any resource kind.
"""

from controller.runtime.workqueue.delaying import DelayingQueue
from controller.runtime.workqueue.metrics import (
    NOOP_WORKQUEUE_METRICS,
    CallbackGaugeMetric,
    CounterMetric,
    GaugeMetric,
    HistogramMetric,
    NoopWorkqueueMetrics,
    WorkqueueMetrics,
)
from controller.runtime.workqueue.priority import Priority, PriorityQueue
from controller.runtime.workqueue.queue import ShutDown, WorkQueue
from controller.runtime.workqueue.rate_limiters import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    RateLimiter,
    default_controller_rate_limiter,
)
from controller.runtime.workqueue.rate_limiting_queue import RateLimitingQueue

__all__ = [
    "NOOP_WORKQUEUE_METRICS",
    "BucketRateLimiter",
    "CallbackGaugeMetric",
    "CounterMetric",
    "DelayingQueue",
    "GaugeMetric",
    "HistogramMetric",
    "ItemExponentialFailureRateLimiter",
    "MaxOfRateLimiter",
    "NoopWorkqueueMetrics",
    "Priority",
    "PriorityQueue",
    "RateLimiter",
    "RateLimitingQueue",
    "ShutDown",
    "WorkQueue",
    "WorkqueueMetrics",
    "default_controller_rate_limiter",
]
