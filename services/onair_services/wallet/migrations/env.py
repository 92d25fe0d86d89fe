from onair.db.migrations import run_env
from onair.logstream.schema import metadata as logstream_metadata
from onair_services.wallet.models import metadata

run_env([metadata, logstream_metadata])
