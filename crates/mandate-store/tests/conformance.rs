//! The storage conformance suite: written once against `Arc<dyn Store>`, run for every backend.
//!
//! Each case (in the modules below, by aggregate) is a plain async function taking a fresh,
//! migrated store. The `conformance!` macro turns every case into one test per backend:
//! `sqlite::*` on a new file in a temporary directory, `postgres::*` on a new database created
//! through `MANDATE_TEST_POSTGRES_URL` (dropped again afterwards, pass or fail). Without that
//! variable the PostgreSQL tests print `SKIPPED` and pass, so the absence is visible in the
//! output.

// The cases are plain async fns called from the generated #[tokio::test]s, which clippy's
// allow-*-in-tests settings do not see as tests; panicking on a failed expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "conformance/admin_roles.rs"]
mod admin_roles;
#[path = "conformance/api_keys.rs"]
mod api_keys;
#[path = "conformance/audit_chain.rs"]
mod audit_chain;
#[path = "conformance/batch.rs"]
mod batch;
#[path = "conformance/bulk.rs"]
mod bulk;
#[path = "conformance/directory.rs"]
mod directory;
#[path = "conformance/events.rs"]
mod events;
#[path = "conformance/export_cursors.rs"]
mod export_cursors;
#[path = "conformance/fixtures.rs"]
mod fixtures;
#[path = "conformance/grants.rs"]
mod grants;
#[path = "conformance/listings.rs"]
mod listings;
#[path = "conformance/load.rs"]
mod load;
#[path = "conformance/registrations.rs"]
mod registrations;
#[path = "conformance/retention.rs"]
mod retention;
#[path = "conformance/tokens.rs"]
mod tokens;

use admin_roles::*;
use api_keys::*;
use audit_chain::*;
use batch::*;
use bulk::*;
use directory::*;
use events::*;
use export_cursors::*;
use grants::*;
use listings::*;
use load::*;
use mandate_store::Store;
use registrations::*;
use retention::*;
use std::sync::Arc;
use tokens::*;

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("mandate.db").display())
}

async fn sqlite_store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    mandate_store::connect(&sqlite_url(dir)).await.unwrap()
}

/// Cases after `raw:` also take the database's URL, to write to it directly.
macro_rules! conformance {
    ($($name:ident),* $(,)? ; raw: $($raw:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = super::sqlite_store(&dir).await;
                    assert_eq!(store.backend(), "sqlite");
                    super::$name(store).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $raw() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = super::sqlite_store(&dir).await;
                    super::$raw(store, super::sqlite_url(&dir)).await;
                }
            )*
        }

        /// An in-memory database: its group-commit batches go through sqlx, not the file
        /// database's batch connection, so both paths run the same cases. (The raw cases
        /// open the database by URL, which a second in-memory database would not share.)
        mod sqlite_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let store = mandate_store::connect("sqlite::memory:").await.unwrap();
                    assert_eq!(store.backend(), "sqlite");
                    super::$name(store).await;
                }
            )*
        }

        mod postgres {
            use mandate_store::testing;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(admin) = testing::postgres_test_url() else {
                        eprintln!(
                            "SKIPPED: MANDATE_TEST_POSTGRES_URL not set; \
                             PostgreSQL conformance not run"
                        );
                        return;
                    };
                    let url = testing::fresh_postgres_database(&admin).await.unwrap();
                    let store = mandate_store::connect(&url).await.unwrap();
                    assert_eq!(store.backend(), "postgres");
                    // Run the case as a task so a failing assertion still drops the database.
                    let outcome = tokio::spawn(super::$name(store)).await;
                    testing::drop_postgres_database(&admin, &url).await.unwrap();
                    if let Err(failed) = outcome {
                        std::panic::resume_unwind(failed.into_panic());
                    }
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $raw() {
                    let Some(admin) = testing::postgres_test_url() else {
                        eprintln!(
                            "SKIPPED: MANDATE_TEST_POSTGRES_URL not set; \
                             PostgreSQL conformance not run"
                        );
                        return;
                    };
                    let url = testing::fresh_postgres_database(&admin).await.unwrap();
                    let store = mandate_store::connect(&url).await.unwrap();
                    let outcome = tokio::spawn(super::$raw(store, url.clone())).await;
                    testing::drop_postgres_database(&admin, &url).await.unwrap();
                    if let Err(failed) = outcome {
                        std::panic::resume_unwind(failed.into_panic());
                    }
                }
            )*
        }
    };
}

conformance!(
    backend_answers_ping,
    tenants_upsert_and_list_in_id_order,
    users_round_trip_and_logins_are_unique,
    agents_round_trip_every_field,
    catalog_upserts_and_lists_in_order,
    grants_round_trip_update_and_filter,
    listings_page_by_keyset_and_counts_stop_at_their_cap,
    active_grant_is_the_newest_live_one,
    grants_in_force_are_the_unrevoked_unexpired_ones,
    revoke_grant_revokes_its_families_once,
    codes_are_consumed_once_and_replays_are_recognised,
    redemption_lookups_carry_the_grant_and_the_users_standing,
    concurrent_code_redemptions_yield_exactly_one_fresh,
    refresh_families_hold_their_live_token,
    legacy_tokens_rotate_into_a_live_token,
    concurrent_rotations_yield_exactly_one_winner,
    batched_rotations_have_one_winner_and_losers_write_nothing,
    a_rotation_applied_alone_applies_once,
    a_redemption_applied_alone_is_all_or_nothing,
    a_batch_applies_its_changes_and_events_atomically,
    the_writer_fails_only_the_change_that_cannot_apply,
    the_writer_declines_events_whose_grant_is_no_longer_in_force,
    codes_consumed_through_the_writer_have_one_owner,
    revoked_jtis_are_remembered,
    access_token_usability_checks_jti_grant_agent_and_user,
    sessions_expire_and_can_be_deleted,
    housekeeping_purges_only_expired_short_lived_records,
    expired_refresh_tokens_are_purged_in_pages,
    pending_requests_expire_and_are_taken_once,
    signing_keys_keep_their_bytes_newest_first,
    events_append_in_order_and_filter,
    events_filter_by_user_agent_and_time_both_ways,
    event_notifications_announce_commits,
    large_event_batches_keep_input_order,
    group_commit_writer_acknowledges_every_event,
    group_commit_writer_reports_every_commit_and_nothing_pending,
    api_keys_round_trip_by_hash_id_and_tenant,
    api_key_listing_pages_newest_first_within_a_tenant,
    api_key_revocation_writes_one_feed_event,
    api_key_rotation_links_shortens_and_refuses_dead_keys,
    concurrent_rotations_of_a_key_yield_one_successor,
    registrations_round_trip_and_are_found_by_token_hash,
    registration_updates_keep_operator_owned_fields,
    deleting_a_registration_revokes_only_its_grants,
    abandoned_registrations_are_purged_with_their_agents,
    assertion_jtis_are_remembered_once_per_client,
    concurrent_jti_inserts_yield_exactly_one_first,
    bulk_revocation_by_user_touches_only_that_user,
    bulk_revocation_by_tenant_touches_only_that_tenant,
    bulk_revocation_by_agent_spans_tenants_but_not_keys,
    bulk_revocation_by_agent_in_tenant_stays_in_the_tenant,
    bulk_revocation_of_nobody_changes_nothing,
    admin_roles_replace_remove_and_record_events,
    audit_chain_is_gapless_and_verifies_under_concurrent_writers,
    batches_after_another_writer_chain_onto_its_event,
    export_cursors_advance_by_compare_and_set,
    retention_purges_through_a_checkpoint_and_the_chain_verifies_from_it,
    retention_never_purges_what_an_export_sink_has_not_delivered,
    concurrent_appends_and_purges_leave_a_gapless_verifiable_chain,
    bulk_loaded_rows_read_back_like_single_inserts,
    a_bulk_load_with_a_duplicate_stores_nothing;
    raw:
    kept_introspection_answers_end_with_every_change_raw,
    migration_revokes_all_but_the_newest_duplicate_user_grant_raw,
    after_a_purge_kept_events_still_cannot_be_edited_or_deleted_raw,
    tampering_with_the_start_hash_is_found_raw,
    revocations_are_read_through_their_own_index_raw,
    events_of_a_user_include_the_tokens_of_their_grants_raw,
    live_grant_listings_read_through_the_live_indexes_raw,
    deleting_the_checkpoint_is_found_raw,
    altering_the_checkpoint_signature_is_found_raw,
    moving_the_start_forward_over_deleted_events_is_found_raw,
    deleting_kept_events_behind_the_triggers_is_found_raw,
);
