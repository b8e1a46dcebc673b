import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # corpus_models / corpus_table, also for hotpatch.load
