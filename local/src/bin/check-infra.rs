//! Fails when the synthesized CDK stack and `template.yaml` differ:
//! `check-infra infra/cdk.out/ChatBackend.template.json`.

use std::process::ExitCode;

use local::drift::check_against_template;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: check-infra <synthesized CloudFormation template (JSON)>");
        return ExitCode::from(2);
    };
    let checked = std::fs::read_to_string(&path)
        .map_err(|error| error.to_string())
        .and_then(|synthesized| check_against_template(&synthesized).map_err(|error| error.to_string()));
    match checked {
        Err(error) => eprintln!("check-infra: {path}: {error}"),
        Ok((shape, found)) if found.is_empty() => {
            let counts: Vec<String> =
                shape.iter().map(|(category, items)| format!("{} {category}", items.len())).collect();
            eprintln!("check-infra: the CDK app matches template.yaml ({})", counts.join(", "));
            return ExitCode::SUCCESS;
        }
        Ok((_, found)) => {
            for difference in &found {
                eprintln!("drift: {difference}");
            }
            eprintln!("check-infra: {} difference(s) between template.yaml and the CDK app", found.len());
        }
    }
    ExitCode::FAILURE
}
