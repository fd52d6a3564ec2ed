//! Construction-time validation: every problem found before any data moves.

use std::collections::BTreeMap;
use std::fmt;

use sluice_core::trigger::Trigger;

use crate::graph::{PipelineGraph, TransformKind};

/// One problem with a pipeline, naming the transform and the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    /// The transform concerned (its full name), or the flag or resource.
    pub transform: String,
    /// What is wrong.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.transform, self.problem, self.fix)
    }
}

/// Every problem found in a pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "the pipeline is invalid ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Checks a pipeline graph; reports every problem, not just the first.
pub fn validate(graph: &PipelineGraph) -> Result<(), ValidationErrors> {
    let mut errors: Vec<ValidationError> = graph
        .problems
        .iter()
        .map(|p| ValidationError {
            transform: p.transform.clone(),
            problem: p.problem.clone(),
            fix: p.fix.clone(),
        })
        .collect();

    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &graph.transforms {
        *seen.entry(t.name.as_str()).or_default() += 1;
        if t.name.is_empty() || t.name.split('/').any(str::is_empty) {
            errors.push(ValidationError {
                transform: format!("{:?}", t.name),
                problem: "the transform name is empty or has an empty part between '/'".into(),
                fix: "give every transform a non-empty name".into(),
            });
        }
    }
    for (name, count) in seen {
        if count > 1 {
            errors.push(ValidationError {
                transform: name.to_string(),
                problem: format!("{count} transforms share this name"),
                fix: "give each transform a unique name; names identify transforms in plans, metrics and logs".into(),
            });
        }
    }

    for (id, t) in graph.leaves() {
        for input in &t.inputs {
            let Some(pc) = graph.pcollections.get(input.0) else {
                errors.push(ValidationError {
                    transform: t.name.clone(),
                    problem: format!("reads PCollection #{} which does not exist", input.0),
                    fix: "apply transforms only to PCollections of the same pipeline".into(),
                });
                continue;
            };
            if pc.producer >= id {
                errors.push(ValidationError {
                    transform: t.name.clone(),
                    problem: format!("reads {} before it is produced", pc.name),
                    fix: "a pipeline must be acyclic".into(),
                });
            }
        }
        for side in &t.side_inputs {
            let is_view = graph
                .pcollections
                .get(side.0)
                .is_some_and(|pc| graph.transform(pc.producer).kind() == TransformKind::View);
            if !is_view {
                errors.push(ValidationError {
                    transform: t.name.clone(),
                    problem: format!("side input #{} is not a view of this pipeline", side.0),
                    fix: "pass views made with as_singleton, as_iterable, as_map or as_multimap on this pipeline".into(),
                });
            } else if let Some(pc) = graph.pcollections.get(side.0).filter(|pc| !pc.bounded) {
                errors.push(ValidationError {
                    transform: t.name.clone(),
                    problem: format!(
                        "reads the side input {}, computed from an unbounded PCollection; a side input is read whole once complete, which an unbounded one never is",
                        pc.name
                    ),
                    fix: "compute the side input from bounded data, or join the two streams per window with CoGroupByKey".into(),
                });
            }
        }
        let expects_input = !matches!(
            t.kind(),
            TransformKind::Read | TransformKind::Create | TransformKind::Flatten
        );
        if expects_input && t.inputs.is_empty() {
            errors.push(ValidationError {
                transform: t.name.clone(),
                problem: format!("a {} needs an input", t.kind()),
                fix: "apply it to a PCollection".into(),
            });
        }
    }

    errors.extend(check_windowing(graph));

    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errors))
    }
}

/// Groupings whose windowing could never emit, or would silently lose data.
fn check_windowing(graph: &PipelineGraph) -> Vec<ValidationError> {
    let mut errors = Vec::new();
    for (_, t) in graph.leaves() {
        if t.kind() != TransformKind::GroupByKey {
            continue;
        }
        let Some(pc) = t.inputs.first().and_then(|i| graph.pcollections.get(i.0)) else {
            continue;
        };
        let w = &pc.windowing;
        if !pc.bounded && w.window_fn.is_global() && w.trigger == Trigger::Default {
            errors.push(ValidationError {
                transform: t.name.clone(),
                problem: format!(
                    "groups {}, an unbounded PCollection, in the global window with the default trigger: it would never emit",
                    pc.name
                ),
                fix: "window it first (window_into with fixed, sliding or session windows), or set a trigger that fires before the end of time, e.g. Trigger::repeatedly(Trigger::after_processing_time(..))".into(),
            });
        }
        let finishes_at_its_end = matches!(w.trigger, Trigger::AfterWatermark { late: None, .. })
            && w.allowed_lateness_us == 0;
        if w.trigger.may_finish() && !finishes_at_its_end && !graph.allow_unsafe_triggers {
            errors.push(ValidationError {
                transform: t.name.clone(),
                problem: format!(
                    "the trigger {} of {} may finish before its window expires, and data arriving after that would be dropped",
                    w.trigger, pc.name
                ),
                fix: "wrap it in Trigger::repeatedly, or pass --allow_unsafe_triggers to accept losing that data".into(),
            });
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Payload;
    use sluice_core::unit::TypeOf;

    #[test]
    fn duplicate_names_are_reported_with_the_fix() {
        let mut g = PipelineGraph::default();
        let a = g.add_transform("Numbers", None, vec![], Payload::Flatten);
        let pc = g.add_output(a, "Numbers.out", TypeOf::<u32>::arc());
        g.add_transform("Numbers", None, vec![pc], Payload::Reshuffle);
        let err = validate(&g).unwrap_err();
        assert_eq!(err.0.len(), 1);
        let text = err.to_string();
        assert!(
            text.contains("Numbers: 2 transforms share this name"),
            "{text}"
        );
        assert!(text.contains("unique name"), "{text}");
    }

    #[test]
    fn every_problem_is_reported_not_just_the_first() {
        let mut g = PipelineGraph::default();
        g.add_problem(
            "ReadLines",
            "the input pattern /nope/* matches no file",
            "check --input",
        );
        g.add_transform("", None, vec![], Payload::Flatten);
        g.add_transform("Shuffle", None, vec![], Payload::Reshuffle);
        let err = validate(&g).unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
        assert!(
            err.to_string()
                .starts_with("the pipeline is invalid (3 problems):")
        );
    }
}
