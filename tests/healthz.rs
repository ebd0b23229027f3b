mod common;

#[tokio::test]
async fn healthz_answers_ok_while_serving() {
    let server = common::start().await;
    let v = server.json("/healthz", 200).await;
    assert_eq!(v["status"], "ok");
}
