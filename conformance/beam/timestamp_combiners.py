# Beam Python side of streaming::timestamp_combiners_stamp_results_as_beam_does:
# output timestamps of grouped results with each timestamp combiner.
import sys
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms import window, trigger
from apache_beam.transforms.timeutil import TimeDomain

TC = window.TimestampCombiner

class Show(beam.DoFn):
    def __init__(self, label):
        self.label = label
    def process(self, kv, w=beam.DoFn.WindowParam, p=beam.DoFn.PaneInfoParam, t=beam.DoFn.TimestampParam):
        print("OUT", self.label, kv[0], kv[1], float(w.start), float(w.end), p.timing, p.index, float(t), flush=True)

def run(label, stream, wfn, tc, lateness=0, trig=None, combine=True):
    opts = PipelineOptions()
    opts.view_as(StandardOptions).streaming = True
    with beam.Pipeline(options=opts) as p:
        kw = dict(timestamp_combiner=tc, allowed_lateness=lateness)
        if trig is not None:
            kw.update(trigger=trig, accumulation_mode=trigger.AccumulationMode.DISCARDING)
        pc = p | stream | beam.WindowInto(wfn, **kw)
        if combine:
            pc = pc | beam.CombinePerKey(sum)
        else:
            pc = pc | beam.GroupByKey() | beam.MapTuple(lambda k, vs: (k, sum(vs)))
        pc | beam.ParDo(Show(label))

tv = lambda k, v, t: window.TimestampedValue((k, v), t)
for tc, name in [(TC.OUTPUT_AT_EOW, "eow"), (TC.OUTPUT_AT_EARLIEST, "earliest"), (TC.OUTPUT_AT_LATEST, "latest")]:
    # On time: two elements in [0, 10).
    run(f"ontime-{name}", TestStream().add_elements([tv("k", 1, 3), tv("k", 2, 7)]).advance_watermark_to_infinity(),
        window.FixedWindows(10), tc)
    run(f"ontime-gbk-{name}", TestStream().add_elements([tv("k", 1, 3), tv("k", 2, 7)]).advance_watermark_to_infinity(),
        window.FixedWindows(10), tc, combine=False)
    # Late data: the window fired on time, then an element behind the watermark.
    run(f"late-{name}", TestStream().add_elements([tv("k", 1, 3)]).advance_watermark_to(20)
        .add_elements([tv("k", 4, 5)]).advance_watermark_to_infinity(),
        window.FixedWindows(10), tc, lateness=100)
    # Sessions merging.
    run(f"sessions-{name}", TestStream().add_elements([tv("u", 1, 2), tv("u", 1, 5)]).advance_watermark_to_infinity(),
        window.Sessions(5), tc)
    # Late data through a GroupByKey (not lifted), alongside data still on time.
    run(f"late-gbk-{name}", TestStream().add_elements([tv("k", 1, 3)]).advance_watermark_to(20)
        .add_elements([tv("k", 4, 5), tv("k", 8, 25)]).advance_watermark_to_infinity(),
        window.FixedWindows(10), tc, lateness=100, combine=False)
    # Sliding windows.
    run(f"sliding-{name}", TestStream().add_elements([tv("x", 1, 2), tv("x", 10, 7)]).advance_watermark_to_infinity(),
        window.SlidingWindows(10, 5), tc)
