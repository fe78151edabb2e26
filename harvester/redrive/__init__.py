"""Re-drives: photos the download queue gave up on (`failed`, or `gone` by mistake) put back
in it with a fresh attempt count (`harvester requeue`, `salt-run batch.requeue`)."""
