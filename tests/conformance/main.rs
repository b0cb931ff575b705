//! The conformance suite: every behaviour of the contract's API section, written once as a
//! generic function over `B: uniconc::Backend`, and instantiated here for every enabled backend,
//! so test names carry the backend: `thread::channel_fifo`, `process::channel_fifo`,
//! `tokio::channel_fifo`, `redis::channel_fifo` (feature `redis`: a private `redis-server`
//! per test binary, so `redis-server` must be installed; a missing one fails the tests).
//!
//! Rules the tests follow so they hold for forked processes too: a spawned closure talks to the
//! test only through uniconc primitives (channels, values, arrays, locks, join results), never
//! through `Arc`/atomics/`Mutex` captured from the test; messages and results are serde types.
//! Process-backend tests run one at a time and alone (see [`support::run`]); every test runs
//! under a watchdog. Stress sizes scale with `UNICONC_STRESS_SCALE` (default 1).
//!
//! Files: `channel.rs`, `channel_batch.rs` (`send_batch`, `recv_batch`), `channel_values.rs` (when queued values are dropped), `sync.rs`,
//! `loan.rs` (`send_with`, `recv_with`: byte messages written and read in place),
//! `state.rs`, `collections.rs` (Map and List), `spawn.rs`, `task.rs` (named tasks), `pool.rs`
//! (closures and named tasks), `named.rs` (named objects), `async_forms.rs` (the `_async`
//! forms driven by a tokio runtime), `select.rs` (waiting on several channels: `Select`,
//! `select!`, timers, `select_async`),
//! `support.rs` (watchdog, scale, runtime).

mod async_forms;
mod channel;
mod channel_batch;
mod channel_values;
mod collections;
mod loan;
mod named;
mod pool;
mod select;
mod spawn;
mod state;
mod support;
mod sync;
mod task;
mod travel;

/// Calls `$m!` with the backend type and the list of every conformance test (`module::name`).
macro_rules! all_tests {
    ($m:ident, $backend:ty) => {
        $m! { $backend;
            channel::channel_fifo,
            channel::channel_fifo_across_units,
            channel::channel_mpmc_no_loss_no_duplicates,
            channel::channel_try_forms_full_and_empty,
            channel::channel_timeouts,
            channel::channel_capacity_zero_refused,
            channel::channel_close_drains_then_disconnects,
            channel::channel_close_from_another_unit_wakes_receiver,
            channel::channel_close_wakes_blocked_sender,
            channel::channel_all_senders_dropped,
            channel::channel_all_receivers_dropped,
            channel::channel_iter_ends_at_disconnection,
            channel::channel_try_iter_does_not_block,
            channel::channel_len_and_capacity,
            channel::channel_unbounded_holds_many,
            channel::channel_error_values_are_returned,
            channel::channel_is_full_and_same_channel,
            channel::channel_receiver_into_iterator,
            channel::channel_blocking_calls_in_a_thread_local_destructor,
            channel_values::channel_queued_values_dropped_with_last_receiver,
            channel::channel_try_recv_after_send_is_never_empty,
            channel::channel_unbounded_holds_128_mib,
            channel_batch::channel_batch_order_and_counts,
            channel_batch::channel_batch_max_zero,
            channel_batch::channel_batch_taken_apart_by_receivers,
            channel_batch::channel_batch_blocks_until_one,
            channel_batch::channel_batch_respects_capacity,
            channel_batch::channel_batch_disconnection_part_way,
            channel_batch::channel_batch_invalid_in_the_middle,
            loan::loan_round_trip_across_units,
            loan::loan_mixed_with_plain_forms_and_zero_length,
            loan::loan_try_and_timed_forms,
            loan::loan_disconnection,
            loan::loan_panicking_closures_lose_nothing_else,
            loan::loan_oversized_len_is_refused_naming_byte_budget,
            sync::lock_mutual_exclusion_under_contention,
            sync::lock_try_lock_and_timeout_while_held_elsewhere,
            sync::lock_panicking_holder_poisons_once,
            sync::value_and_array_locks_poison_once,
            sync::semaphore_bounds_concurrency,
            sync::semaphore_forget_release_available,
            sync::semaphore_release_signals_another_unit,
            sync::semaphore_permit_moved_into_a_unit_is_released_once,
            sync::event_set_clear_wait_timeouts,
            sync::barrier_one_leader_per_generation,
            sync::barrier_timeout_withdraws,
            sync::barrier_of_zero_refused,
            state::value_load_store_update_under_contention,
            state::value_lock_guard,
            state::array_from_slice_get_set_bounds,
            state::array_guard_and_to_vec_across_units,
            collections::map_insert_get_remove_len_clear,
            collections::map_update_inserts_changes_removes_and_returns,
            collections::map_panicking_update_changes_nothing,
            collections::map_get_or_insert_with_races_insert_once,
            collections::map_update_from_4_units_counts_exactly,
            collections::map_snapshots_are_consistent,
            collections::map_bad_values_are_refused_and_change_nothing,
            collections::list_push_pop_get_set_insert_remove,
            collections::list_truncate_clear_extend_reverse_iter,
            collections::list_update_returns_and_panics_change_nothing,
            collections::list_bad_values_are_refused_and_change_nothing,
            collections::list_snapshots_are_consistent,
            collections::collections_shared_with_spawned_units,
            spawn::spawn_returns_result,
            spawn::spawn_panic_message,
            spawn::spawn_join_timeout_then_join,
            spawn::spawn_ids_are_distinct,
            spawn::spawn_kill_where_supported,
            spawn::spawn_async_runs_a_future,
            spawn::errors_convert_with_question_mark,
            spawn::spawn_inside_a_runtime_starts_outside_it,
            task::task_spawn_returns_result,
            task::task_panic_is_panicked_with_its_message,
            task::task_from_generic_code,
            pool::pool_map_keeps_input_order,
            pool::pool_map_many_items,
            pool::pool_imap_is_lazy_on_endless_input,
            pool::pool_imap_window_holds_behind_a_slow_chunk,
            pool::pool_imap_unordered_is_complete,
            pool::pool_imap_with_either_order,
            pool::pool_submit_and_wait,
            pool::pool_task_wait_timeout_then_wait,
            pool::pool_panicking_task_is_isolated,
            pool::pool_close_and_join,
            pool::pool_terminate,
            pool::pool_zero_workers_and_bad_settings_refused,
            pool::pool_builder_settings,
            pool::pool_task_timeout_where_supported,
            pool::pool_capturing_closure,
            pool::pool_inside_a_runtime_runs_tasks_outside_it,
            pool::pool_named_task_map_keeps_input_order,
            pool::pool_named_task_imap_in_order_and_lazy,
            pool::pool_named_task_imap_unordered_is_complete,
            pool::pool_named_task_submit_and_wait,
            pool::pool_named_task_on_each_start_method,
            pool::pool_named_task_panic_is_panicked_with_its_message,
            pool::pool_named_task_closed_pool_refused,
            pool::pool_named_task_from_generic_code,
            async_forms::async_send_recv_fifo,
            async_forms::async_mpmc_counts,
            async_forms::async_recv_cancel_safety,
            async_forms::async_send_waits_for_room_and_is_cancel_safe,
            async_forms::async_lock,
            async_forms::async_acquire_cancel_safety,
            async_forms::async_event_wait,
            async_forms::async_barrier_wait,
            async_forms::async_join,
            async_forms::async_task_wait,
            async_forms::sync_producer_async_consumers,
            named::named_create_open_and_unlink,
            named::named_bad_names_refused,
            named::named_mismatches_are_incompatible,
            named::named_channel_byte_budget,
            named::named_objects_found_by_name_in_spawned_units,
            named::named_receiver_opened_first_waits_for_a_sender,
            named::named_map_and_list_shared_by_name,
            select::select_takes_one_ready_and_leaves_the_others,
            select::select_try_select_on_nothing_ready,
            select::select_timeouts,
            select::select_disconnection_is_a_result,
            select::select_fair_over_10k_rounds,
            select::select_send_arm_on_a_full_channel,
            select::select_woken_by_another_unit,
            select::select_mpmc_exactly_once,
            select::select_peer_killed_wakes_with_disconnected,
            select::select_async_in_spawn_async,
            select::select_tokio_select_over_async_forms_loses_nothing,
            select::select_macro_arms,
            select::select_ready_forms,
            select::select_timers_with_channels,
        }
    };
}

/// Like `all_tests!`, for the tests that need values to stay as they were sent (the thread
/// and tokio backends; the process backend serializes them into the channel).
/// Handles that travel: on the backends whose handles are `Message`s (every backend).
#[cfg(any(
    feature = "thread",
    feature = "tokio",
    all(any(feature = "process", feature = "redis"), unix)
))]
macro_rules! travel_tests {
    ($m:ident, $backend:ty) => {
        $m! { $backend;
            travel::travel_worker_sends_back_its_reply_sender,
            travel::travel_sender_reaches_a_worker_started_before_the_channel,
            travel::travel_lock_and_event_through_a_channel,
            travel::travel_through_a_map_and_a_pool_task,
            travel::travel_sender_in_flight_keeps_the_channel_connected,
            travel::travel_sender_dropped_in_flight_disconnects,
        }
    };
}

#[cfg(any(feature = "thread", feature = "tokio"))]
macro_rules! in_memory_value_tests {
    ($m:ident, $backend:ty) => {
        $m! { $backend;
            channel_values::channel_panicking_drops_of_queued_values,
        }
    };
}

/// One `#[test]` per conformance test, for one backend.
macro_rules! instantiate_tests {
    ($backend:ty; $($module:ident :: $test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                let name = concat!(stringify!($module), "::", stringify!($test));
                let backend = std::any::type_name::<$backend>();
                if let Some((_, _, why)) =
                    crate::KNOWN_DEFECTS.iter().find(|(b, t, _)| *b == backend && *t == name)
                {
                    eprintln!("{backend} {name}: NOT RUN, a known defect: {why}");
                    return;
                }
                // First, so that this test can serve as the entry of a clean-started worker
                // (`spawn_task` on the process backend); returns at once otherwise.
                uniconc::init();
                crate::support::run::<$backend>(
                    concat!(stringify!($module), "::", stringify!($test)),
                    crate::$module::$test::<$backend>,
                );
            }
        )*
    };
}

/// Behaviours of the contract a local backend does not meet yet, not run on it (each prints
/// that it was not run): `(backend type name, test, why)`. Every entry is a defect to fix.
const KNOWN_DEFECTS: &[(&str, &str, &str)] = &[];

#[cfg(feature = "thread")]
mod thread {
    all_tests!(instantiate_tests, uniconc::Thread);
    in_memory_value_tests!(instantiate_tests, uniconc::Thread);
    travel_tests!(instantiate_tests, uniconc::Thread);
}

#[cfg(all(feature = "process", unix))]
mod process {
    all_tests!(instantiate_tests, uniconc::Process);
    travel_tests!(instantiate_tests, uniconc::Process);
}

/// On the Redis backend every test first points the default connection at this binary's
/// private `redis-server` (started once, on a free port of 127.0.0.1; stopped with the
/// binary, or killed by the kernel if it dies).
#[cfg(all(feature = "redis", unix))]
macro_rules! instantiate_redis_tests {
    ($backend:ty; $($module:ident :: $test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                let name = concat!(stringify!($module), "::", stringify!($test));
                if let Some((_, why)) = crate::REDIS_KNOWN_DEFECTS.iter().find(|(t, _)| *t == name) {
                    eprintln!("redis::{name}: NOT RUN, a known defect of the Redis backend: {why}");
                    return;
                }
                uniconc::init();
                crate::support::redis_server();
                crate::support::run_scaled_down::<$backend>(
                    concat!(stringify!($module), "::", stringify!($test)),
                    crate::$module::$test::<$backend>,
                    crate::REDIS_STRESS_DIVISOR,
                );
            }
        )*
    };
}

/// How many times fewer messages the stress tests move on Redis: every operation there is a
/// round trip to the server (about 0.2 ms for the plainest command on a loaded 2-core machine,
/// which the channel's scripts match), so the in-memory backends' hundreds of thousands of
/// operations would outlast the watchdog. `UNICONC_STRESS_SCALE` still multiplies the sizes.
#[cfg(all(feature = "redis", unix))]
const REDIS_STRESS_DIVISOR: usize = 20;

/// Behaviours of the contract the Redis backend does not meet yet, not run on it (each prints
/// that it was not run). Every entry is a defect to fix, not a difference of the backend
/// (those are capability constants).
#[cfg(all(feature = "redis", unix))]
const REDIS_KNOWN_DEFECTS: &[(&str, &str)] = &[];

#[cfg(all(feature = "redis", unix))]
mod redis {
    all_tests!(instantiate_redis_tests, uniconc::Redis);
    travel_tests!(instantiate_redis_tests, uniconc::Redis);
}

#[cfg(feature = "tokio")]
mod tokio {
    all_tests!(instantiate_tests, uniconc::Tokio);
    in_memory_value_tests!(instantiate_tests, uniconc::Tokio);
    travel_tests!(instantiate_tests, uniconc::Tokio);
}
