"""spark-submit entry point: ``spark-submit pipelines/spark_submit.py [funnel options] pipeline JOB``.

Runs the same code as ``funnel pipeline JOB``; the master and resources come from spark-submit's
options (``--master``, ``--driver-memory`` ...). The workers need Funnel installed
(``pip install -e .`` on each node, or ``--py-files`` with a zip of the packages).
"""
import sys

from funnel.cli.main import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    sys.exit(main(argv if "pipeline" in argv else ["pipeline", *argv]))
