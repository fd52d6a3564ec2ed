# Beam Python side of streaming::regression_a_merged_session_counts_its_panes_afresh:
# pane indexes of a session window that merges, with early firings.
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms import window, trigger
from apache_beam.utils.timestamp import MAX_TIMESTAMP

class WithPane(beam.DoFn):
    def process(self, kv, w=beam.DoFn.WindowParam, p=beam.DoFn.PaneInfoParam):
        print("OUT", kv[0], kv[1], float(w.start), float(w.end), p.timing, p.index, p.nonspeculative_index, p.is_first, p.is_last, flush=True)

stream = (TestStream()
          .add_elements([window.TimestampedValue(("u", 1), 0)])
          .add_elements([window.TimestampedValue(("u", 1), 10)])
          .advance_watermark_to_infinity())
opts = PipelineOptions()
opts.view_as(StandardOptions).streaming = True
with beam.Pipeline(options=opts) as p:
    (p | stream
       | beam.WindowInto(window.Sessions(15),
                         trigger=trigger.AfterWatermark(early=trigger.AfterCount(1), late=trigger.AfterCount(1)),
                         accumulation_mode=trigger.AccumulationMode.ACCUMULATING,
                         allowed_lateness=100)
       | beam.CombinePerKey(sum)
       | beam.ParDo(WithPane()))
