//! EKS DescribeCluster against moto_server (APNA_TEST_MOTO_URL): the driver
//! reads the endpoint and CA a created cluster has, and an unknown cluster is
//! a clear error. (The token itself is checked against botocore in
//! `sandbox::kube::eks::tests`.)

use apna::error::Error;
use apna::sandbox::kube::eks::describe_cluster;
use apna::testing::services::moto_url;
use aws_sdk_eks::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_eks::types::VpcConfigRequest;

fn client(url: &str) -> aws_sdk_eks::Client {
    let conf = aws_sdk_eks::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .endpoint_url(url.trim_end_matches('/'))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .build();
    aws_sdk_eks::Client::from_conf(conf)
}

#[tokio::test]
async fn describe_cluster_reads_endpoint_and_ca() {
    let Some(url) = moto_url() else { return };
    let eks = client(&url);
    let name = format!("apna-{}", uuid::Uuid::new_v4().simple());
    let created = eks
        .create_cluster()
        .name(&name)
        .role_arn("arn:aws:iam::123456789012:role/eks")
        .resources_vpc_config(
            VpcConfigRequest::builder()
                .subnet_ids("subnet-0123")
                .build(),
        )
        .send()
        .await
        .expect("CreateCluster on moto");
    let created = created.cluster().expect("cluster");

    let got = describe_cluster(&eks, &name).await.unwrap();
    assert_eq!(Some(got.endpoint.as_str()), created.endpoint());
    assert!(got.endpoint.starts_with("https://"), "{}", got.endpoint);
    assert_eq!(
        Some(got.certificate_authority.as_str()),
        created.certificate_authority().and_then(|c| c.data())
    );
    // moto's CA is random text, not a certificate: refused, not trusted.
    assert!(matches!(got.kube_config("apna"), Err(Error::Sandbox(_))));

    match describe_cluster(&eks, "no-such-cluster").await {
        Err(Error::Sandbox(m)) => assert!(m.contains("no-such-cluster"), "{m}"),
        other => panic!("{other:?}"),
    }
}
