//! The generator against events printed by a JVM running Beam's generation logic for the
//! default configuration.

use sluice_nexmark::generator::{Generator, NexmarkConfig};
use sluice_nexmark::json::event_to_json;

fn fnv1a(h: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *h ^= u64::from(*b);
        *h = h.wrapping_mul(0x100_0000_01b3);
    }
}

#[test]
fn the_default_hundred_thousand_events_match_the_jvm() {
    let config = NexmarkConfig::default();
    let timeline = config.timeline();
    let generator = Generator::new(&config, &timeline);
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut bytes = 0;
    let mut lines = Vec::new();
    for range in config.generator_ranges() {
        for count in 0..range.max_events {
            let (event, millis) = generator.event(&range, count);
            assert_eq!(event.date_time(), millis);
            let mut line = event_to_json(&event);
            line.push('\n');
            fnv1a(&mut hash, line.as_bytes());
            bytes += line.len();
            if [1, 999, 1000, 54321, 99999].contains(&(range.first_event_id + count)) {
                lines.push(line);
            }
        }
    }
    // The whole file, 18,208,729 bytes of JSON lines.
    assert_eq!((bytes, hash), (18_208_729, 0xb923_acc4_41be_7998));
    assert!(lines[0].starts_with(r#"{"id":1000,"itemName":"wkx mgee","description":"eszpqxtdxrvwmmywkmogoahf","initialBid":28873,"reserve":29448,"dateTime":1436918400010,"expires":1436918409425,"seller":1000,"category":13,"extra":"zcurskufssowmihzpmZHWQM^fnle"#));
    assert_eq!(
        lines[1],
        "{\"auction\":1000,\"bidder\":1001,\"price\":2305081,\"dateTime\":1436918409990,\"extra\":\"cktnjhbwechurxwxdraT\\\\]L`WJQSVapkyojdO]XRIYRT`\\\\U`TY__XURNVZ[^UJ\"}\n"
    );
    // Generator 1's first event: person 1020, at the base time on its own timeline.
    assert!(lines[2].starts_with(r#"{"id":1020,"name":"Walter Abrams","emailAddress":"alkt@csxs.com","creditCard":"0871 2589 0002 1693","city":"San Francisco","state":"CA","dateTime":1436918400000,"#));
    assert!(
        lines[3].starts_with(
            r#"{"auction":4200,"bidder":2001,"price":2351959,"dateTime":1436918403210,"#
        )
    );
    assert!(
        lines[4].starts_with(
            r#"{"auction":6900,"bidder":2901,"price":76433,"dateTime":1436918409990,"#
        )
    );
}

#[test]
fn an_event_is_the_same_whoever_generates_it() {
    let config = NexmarkConfig {
        num_events: 5_000,
        ..NexmarkConfig::default()
    };
    let timeline = config.timeline();
    let generator = Generator::new(&config, &timeline);
    for range in config.generator_ranges() {
        for count in (0..range.max_events).step_by(7) {
            let id = range.first_event_id + count;
            assert_eq!(generator.event(&range, count), config.event_at(id));
        }
    }
}

/// Each event as JSON with the event time the pipeline gave it.
#[derive(Clone)]
struct Stamped;

impl sluice::DoFn for Stamped {
    type In = sluice_nexmark::model::Event;
    type Out = (String, i64);
    fn process(
        &mut self,
        e: sluice_nexmark::model::Event,
        ctx: &mut sluice::Context<'_, (String, i64)>,
    ) -> Result<(), sluice::BoxError> {
        let at = ctx.timestamp().as_millis();
        ctx.emit((event_to_json(&e), at));
        Ok(())
    }
}

#[test]
fn the_pipeline_sources_give_the_same_events_and_times_on_any_workers() {
    use sluice::{Pipeline, PipelineOptions};
    use sluice_nexmark::source::NexmarkRead;
    let config = NexmarkConfig {
        num_events: 20_000,
        ..NexmarkConfig::default()
    };
    let mut expected: Vec<(String, i64)> = (0..config.num_events)
        .map(|id| {
            let (event, at) = config.event_at(id);
            (event_to_json(&event), at)
        })
        .collect();
    expected.sort();
    for (workers, streaming) in [(1, false), (2, false), (1, true), (2, true)] {
        let mut flags = vec![format!("--direct_num_workers={workers}")];
        if streaming {
            flags.push("--streaming".into());
        }
        let p = Pipeline::with_options(PipelineOptions::parse(flags).unwrap());
        let events = if streaming {
            p.nexmark_stream("Events", &config, None)
        } else {
            p.nexmark_events("Events", &config)
        };
        let got = events.par_do("Stamp", Stamped).collect("Out");
        p.run().unwrap().wait_until_finish().unwrap();
        let mut got = got.values();
        got.sort();
        assert!(
            got == expected,
            "{workers} workers, streaming {streaming}: events differ"
        );
    }
}
