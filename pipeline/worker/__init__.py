"""The worker's assembly and process life: the composition root (``build``), the Faust glue
(``faust_app``), a process's run (``run``), the supervisor of a worker whose roles run as processes of their
own (``supervisor``, ``layout``) and the garbage-collector settings (``gc``).
"""
