//! Prints every object the Kubernetes backend would apply for one
//! deployment (namespace and its policies included) as one multi-document
//! YAML that `kubectl apply -f -` accepts, with no cluster.
//!
//! ```sh
//! cargo run -p cameleer-examples --features kubernetes --bin k8s-render -- \
//!     --tenant acme --app orders --env dev --image REF@sha256:… [--config config.json]
//! ```

use std::process::ExitCode;

use cameleer_examples::k8s_render::{RenderArgs, USAGE, render_yaml};

fn main() -> ExitCode {
    let args = match RenderArgs::parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match render_yaml(&args) {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
