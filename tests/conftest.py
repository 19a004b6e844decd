import sys
from pathlib import Path

# Test helper modules (corpus_expect, test_report_sample) are imported by their plain names.
sys.path.insert(0, str(Path(__file__).resolve().parent))
