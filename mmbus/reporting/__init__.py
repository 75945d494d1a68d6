"""Study reports: a study work dir's result rows (and the files they name) -> tables, figures, targets, and a
GPU kit's results -> a committable summary. A function of the work dir alone: nothing here imports the study
engine (:mod:`mmbus.study`), which writes the work dir and calls :func:`.report.make_report` as its last stage."""
