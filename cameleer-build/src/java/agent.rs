//! The demo agent, compiled on demand and cached.
//!
//! A Java agent that prints [`AGENT_LINE_PREFIX`] and its arguments when the
//! JVM loads it. It stands in for the Cameleer agent: the example server
//! ships it when no agent JAR is configured, and the tests check that every
//! backend starts the JVM with it. Its source lives in
//! `fixtures/java/agent/` at the workspace root and is embedded here with
//! `include_str!`, so the JAR can be produced from any working directory;
//! [`compile_jar`](super::compile_jar) caches it by content: the first call
//! compiles (about a second), later ones return the cached path.
//!
//! Available with the `java` cargo feature.
//!
//! # Examples
//!
//! ```no_run
//! use cameleer_build::java::agent;
//!
//! let jar = agent::agent_jar()?;
//! // java -javaagent:<jar>=tenant=acme -jar app.jar
//! //   prints "[cameleer-agent] attached args=tenant=acme" first.
//! # Ok::<(), cameleer_build::java::JdkError>(())
//! ```

use std::path::PathBuf;

use super::JdkError;

/// The start of the line the demo agent prints when the JVM loads it; the
/// agent's arguments follow (`[cameleer-agent] attached args=<args>`).
pub const AGENT_LINE_PREFIX: &str = "[cameleer-agent] attached args=";

/// The demo agent's `Premain-Class`.
pub const AGENT_CLASS: &str = "io.cameleer.agent.CameleerAgent";

const AGENT_SOURCE: &str =
    include_str!("../../../fixtures/java/agent/src/io/cameleer/agent/CameleerAgent.java");

/// The demo agent JAR (`Premain-Class` and `Agent-Class`
/// [`AGENT_CLASS`]), which prints [`AGENT_LINE_PREFIX`] and its arguments.
pub fn agent_jar() -> Result<PathBuf, JdkError> {
    super::compile_jar(
        "cameleer-demo-agent",
        &[("io/cameleer/agent/CameleerAgent.java", AGENT_SOURCE)],
        &[("Premain-Class", AGENT_CLASS), ("Agent-Class", AGENT_CLASS)],
    )
}
