//! Connecting the tests to the real Docker engine. A missing engine fails the test with
//! instructions; it never skips.

use bollard::Docker;

/// The engine's socket on this machine.
pub const SOCKET: &str = "/var/run/docker.sock";

/// What to do when the engine is not there.
pub const HOW_TO_START: &str = "these tests need a running Docker engine on /var/run/docker.sock: \
    start it with `sudo systemctl start docker` or, as root, `(dockerd > /tmp/dockerd.log 2>&1 &)`, \
    and check with `docker version`";

/// A bollard client for checking Docker's own state, independently of the layer under test.
/// Panics (fails the test) with [`HOW_TO_START`] when the engine is unreachable.
pub async fn docker() -> Docker {
    let docker = Docker::connect_with_socket(SOCKET, 120, bollard::API_DEFAULT_VERSION)
        .unwrap_or_else(|e| panic!("cannot connect to the Docker engine ({e}); {HOW_TO_START}"));
    let docker = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        docker.negotiate_version(),
    )
    .await
    .unwrap_or_else(|_| panic!("the Docker engine did not answer within 20 s; {HOW_TO_START}"))
    .unwrap_or_else(|e| panic!("the Docker engine does not answer ({e}); {HOW_TO_START}"));
    docker
}
