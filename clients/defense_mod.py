"""The Flower client mod that applies a client's defense to its train reply, "before transmission".

Shaped like Flower's ``LocalDpMod`` (``(msg, context, call_next)``): let the ClientApp compute its reply, then
replace the reply's update with the defended one (:meth:`fedleak.defenses.Defense.transform`). Each client looks its
own defense up in the scenario, so one run can compare hospitals that defend differently. A defense without a
transform (none, or one acting during training such as DP-SGD) leaves the reply as the ClientApp made it.
"""

from __future__ import annotations

from collections.abc import Callable

from flwr.app import ArrayRecord, Context, Message, MessageType

from fedleak import protocol
from fedleak.config.loader import scenario_from_json
from fedleak.defenses import apply_defense, import_defense_modules, noise_generator

#: ``call_next`` of a mod: the rest of the chain, ending in the ClientApp.
CallNext = Callable[[Message, Context], Message]


def make_defense_mod(scenario_json: str, client_id: Callable[[Context], int], modules: tuple[str, ...] = ()):
    """A mod applying the scenario's per-client defenses; the scenario travels as JSON (mods are pickled), with
    ``modules``, those that define its defenses (imported first in the worker, which registers them)."""

    def defense_mod(msg: Message, context: Context, call_next: CallNext) -> Message:
        reply = call_next(msg, context)
        if msg.metadata.message_type != MessageType.TRAIN or reply.has_error():
            return reply
        import_defense_modules(modules)
        scenario = scenario_from_json(scenario_json)
        client = client_id(context)
        defense = scenario.client_defense(client)
        if not defense.transforms_reply():
            return reply
        server_round = int(msg.content[protocol.SERVER_CONFIG]["server-round"])
        update = reply.content[protocol.UPDATE].to_torch_state_dict()
        # FedAvg replies carry weights: the defense acts on their change from the weights the client received.
        weights_sent = scenario.training.update != "gradient"
        sent = msg.content[protocol.SERVER_ARRAYS].to_torch_state_dict() if weights_sent else None
        defended = apply_defense(update, defense, noise_generator(scenario.seed, client, server_round), sent=sent)
        reply.content[protocol.UPDATE] = ArrayRecord(torch_state_dict=defended)
        return reply

    return defense_mod
