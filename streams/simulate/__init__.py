"""A simulated marketing and sales world that produces the six input event types.

The model is a discrete-event simulation in event time: a heap of things due
to happen (the next page view of an open session, a deal moving to the next
stage, an hour of ad spend being reported) and arrivals drawn per minute from
a daily and weekly traffic curve. :meth:`World.advance` runs it to a point in
time and returns the events that happened, so the same world serves both a
historical replay (advance to the end at once) and a live feed (advance to
"now" every second). Everything is drawn from one seeded RNG: the same seed,
span and options give the same events.

Realism that the KPI engine has to cope with is part of the model: visitors
come back over days on other channels and devices, trackers resend a few
events (duplicates) and deliver them out of order, cost is reported after the
period it covers and in several currencies, and deals take days to move.
"""


from .model import DAY, HOUR, INCIDENTS, MIN, Options, Visitor
from .replay import closing_events, generate
from .world import World

__all__ = ["DAY", "HOUR", "INCIDENTS", "MIN", "Options", "Visitor", "World", "closing_events",
           "generate"]
