# test_durability.sh with the default batch window ([storage] batch_ms =
# 5000, README "What an acknowledgement promises"): SIGTERM loses nothing,
# kill -9 loses at most what was acknowledged in the last window plus the
# commit, and the database is intact after both.
DURABILITY_BATCH_MS=5000
. "$(dirname "$0")/test_durability.sh"
