"""The processes of `bench/sfu.py`: the load's media and clients, and the servers under test.

* :mod:`.media`: the publisher's stamped 15 fps video, the barcode, the counting decoder;
* :mod:`.signalling`: how a client publishes to and watches through each server;
* :mod:`.client`: the publisher, measuring viewer and cheap viewers, one process each;
* :mod:`.relay`: the stock aiortc ``MediaRelay`` server compared against;
* :mod:`.servers`: starting, measuring and stopping the servers (Janus's config too).
"""
