//! The demo is the newcomer's first contact: it must keep passing its own script.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_script_gets_every_expected_answer() {
    fapi_guard::demo::run(false)
        .await
        .expect("every demo step got its expected answer");
}
