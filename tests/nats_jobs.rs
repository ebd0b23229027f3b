//! The jobs API on NATS JetStream (`--backend nats://`), through the real
//! binary: every case is a function of two nodes, `a` and `b`, run twice,
//! once on two blobq nodes sharing a fresh `nats-server -js` (a job
//! submitted on one node is claimed, polled and finished through the
//! other) and once on one embedded server passed as both, so that the two
//! backends answer the same. The client-side cases are in
//! `nats_jobs/client.rs`, the worker-side ones in `nats_jobs/workers.rs`,
//! shutdown and callbacks (sent by the node that finished the job) in
//! `nats_jobs/lifecycle.rs`.
//! The NATS runs are skipped without `nats-server` unless
//! `BLOBQ_REQUIRE_NATS=1`.

#[path = "jobs/api.rs"]
mod api;
#[path = "nats_jobs/client.rs"]
mod client;
mod common;
#[path = "nats_jobs/lifecycle.rs"]
mod lifecycle;
mod nats;
#[path = "nats_jobs/workers.rs"]
mod workers;

pub use api::*;
use common::TestServer;
use nats::NatsServer;

/// A blobq node on `nats`.
async fn nats_node(nats: &NatsServer) -> TestServer {
    let node = common::options()
        .arg("--backend", nats.url())
        .arg("--nats-ack-wait", 2)
        .start()
        .await;
    node.wait_for_json("/healthz", "connected to NATS", |_| true)
        .await;
    node
}

/// The value of counter `name` in `/metrics`, summed over the nodes (once
/// when `a` and `b` are the same server): each node counts what it did.
async fn job_total(a: &TestServer, b: &TestServer, name: &str) -> u64 {
    let nodes = if a.addr == b.addr {
        vec![a]
    } else {
        vec![a, b]
    };
    let mut sum = 0;
    for node in nodes {
        let metrics = node.get("/metrics").await.text().await.expect("metrics");
        let line = metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '));
        sum += line
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"));
    }
    sum
}

/// Runs each case on two NATS nodes and on one embedded server; a node
/// the case sent SIGTERM must then exit cleanly.
macro_rules! on_both_backends {
    ($($module:ident :: $case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn on_nats() {
                let Some(nats) = super::NatsServer::start() else {
                    return;
                };
                let mut a = super::nats_node(&nats).await;
                let mut b = super::nats_node(&nats).await;
                super::$module::$case(&a, &b).await;
                a.assert_clean_exit_if_terminated().await;
                b.assert_clean_exit_if_terminated().await;
            }

            #[tokio::test]
            async fn embedded() {
                let mut server = super::common::start().await;
                super::$module::$case(&server, &server).await;
                server.assert_clean_exit_if_terminated().await;
            }
        }
    )*};
}

on_both_backends!(
    client::a_submit_answers_the_document_on_either_node,
    client::a_long_poll_on_one_node_is_ended_by_a_worker_on_the_other,
    client::listing_pages_oldest_first_and_counts_by_state,
    client::the_log_lists_each_report_with_a_message_or_a_new_percentage,
    client::delete_and_unknown_jobs,
    client::an_idempotency_key_answers_the_first_job_on_any_node,
    client::lifetimes_and_retention_end_jobs,
    lifecycle::on_shutdown_long_polls_and_waiting_claims_answer_503,
    workers::a_job_runs_through_workers_on_either_node,
    workers::a_waiting_claim_is_woken_by_a_submit_on_the_other_node,
    workers::a_lease_that_runs_out_returns_the_job_to_the_head,
    workers::a_failure_retries_at_the_head_while_attempts_are_left,
    workers::cancel_takes_a_pending_job_out_and_revokes_a_running_one,
    workers::workers_on_both_nodes_finish_each_job_once,
);
