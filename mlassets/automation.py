"""How the graph keeps itself current: the automation conditions, retry policy, freshness policies and pool that
the asset decorators name (one home for each rule).

The Kafka sensors (`image_data_lag`, `trainData_new_rows`) start `inference_records` and `susy_model`; everything
below them follows through declarative automation, evaluated by Dagster's `default_automation_condition_sensor`.
"""

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

from dagster import AutomationCondition as AC
from dagster import Backoff, Failure, FreshnessPolicy, Jitter, RetryPolicy

from mlassets.models.store import ModelStoreError

DAY_CLOSE_CRON = "15 0 * * *"
"""When the previous UTC day of the error tables is closed (recomputed once more, with its last records)."""
DAY_CLOSE_TIMEZONE = "UTC"

SPARK_POOL = "spark"
"""The pool of the Spark-heavy steps; dagster.yaml gives every pool one slot, so two never run at once."""


def _runnable() -> AC:
    """Nothing upstream missing or running, and the target itself not running."""
    return ~AC.any_deps_missing() & ~AC.any_deps_in_progress() & ~AC.in_progress()


FOLLOWS_INPUTS: AC = (
    AC.in_latest_time_window()
    & AC.any_deps_updated().since_last_handled()
    & _runnable()
    & AC.all_deps_blocking_checks_passed()
).with_label("follows its inputs")
"""Requested after any input is materialised again, once nothing upstream is missing or running and every
blocking check upstream passed. Unlike `AutomationCondition.eager()` a missing asset alone requests nothing: the
readers of the dataset files and the streams decide when there is new data."""

TODAY_FOLLOWS_RECORDS: AC = (
    AC.in_latest_time_window() & AC.any_deps_updated().since_last_handled() & _runnable()
).with_label("today's partition follows new inference_records")
"""Today's (the latest) partition of a day table is requested after each new `inference_records` materialisation."""

PREVIOUS_DAY_CLOSED: AC = (
    AC.in_latest_time_window(dt.timedelta(days=2))
    & ~AC.in_latest_time_window()
    & AC.cron_tick_passed(DAY_CLOSE_CRON, DAY_CLOSE_TIMEZONE).since_last_handled()
    & _runnable()
).with_label(f"previous day closed at {DAY_CLOSE_CRON} {DAY_CLOSE_TIMEZONE}")
"""Yesterday's partition is requested once after the 00:15 UTC tick, so records inferred late on that day count."""

DAY_TABLES: AC = (TODAY_FOLLOWS_RECORDS | PREVIOUS_DAY_CLOSED).with_label("day table")
"""The condition of `producer_error_counts` and `class_accuracy` (daily partitions of `inferred_at`)."""

RESCORE_ON_NEW_MODEL: AC = FOLLOWS_INPUTS.with_label("rescored by each new model version")
"""Every chunk of `susy_evaluation` is scored again when `susy_model` (or a chunk of `susy_test_scaled`) is
materialised again and the model passed its blocking checks."""

RECORDS_FRESHNESS = FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=3), warn_window=dt.timedelta(hours=1))
"""`inference_records` and the day tables that follow it: a warning after an hour without a materialisation, failing
(overdue in the UI) after three, as when the drain stalls or the lag sensor is off while producers keep sending.
Evaluated by the daemon's freshness loop (Dagster's default: `freshness: enabled: true`)."""

TRANSIENT_RETRY = RetryPolicy(max_retries=3, delay=3, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)
"""The assets that talk to Kafka, MongoDB, the lake (S3) or Spark: a step that fails is run again after about 3, 6
and 12 s (exponential backoff, jittered), long enough for a broker restart or a Mongo failover. A failed blocking check
is not retried (Dagster fails the step after the op). `sample_image_messages` has none: a retry would send the
simulated producers' images again under a new run id."""


@contextmanager
def refused_model_fails_at_once() -> Iterator[None]:
    """A model version the store refuses (changed, incomplete, or failed a blocking check) fails the step without the
    transient retries: running again cannot change the version's verdict."""
    try:
        yield
    except ModelStoreError as exc:
        raise Failure(description=str(exc), allow_retries=False) from exc
