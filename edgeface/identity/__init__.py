"""Who a face is: galleries and their recovery, the search index, calibration, the decision rule and matching."""
