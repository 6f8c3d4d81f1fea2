"""Sans-I/O protocol of both APIs: plain functions shared by the sync hook and the async trigger."""
