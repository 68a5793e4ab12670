"""Evaluation and benchmarks. Nothing is imported here: the judges (dlib, MediaPipe) are an
optional extra and must never load on the editing path.

Layers, each importing only those above it in this list:
- judges: the dlib and MediaPipe judges, never trained against.
- report, sheets: what every flow shares: summaries with their n, markdown tables,
  report.json / report.md; contact and mouth sheets, worst cases first.
- measures, looks: pure measures on the judges' numbers; what the judges see in one image.
- realism: mouth sharpness and detectability.
- the flows, which build rows and hand them to report and sheets: neutralize_eval,
  transfer_eval, attribute_eval (`stoic eval neutralize / transfer / edit`) and renderer_eval
  (`stoic eval realism`); bench (`stoic bench`) and reference_sets (scripts) beside them."""
