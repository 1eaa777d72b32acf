"""Ownership (point 4): subscribe and send ``from`` only your membership's destinations.

Each violation is an ack error that names the destination, its owner and what to do;
``to`` may be any destination that exists. Nothing is stored for a refused message.
"""

from __future__ import annotations

from tests.support.clients import proven


async def test_subscribe_to_another_membership_names_owner_and_alternatives(
    clients, pool, generation
):
    client = await clients("org1", generation)
    foreign = pool.uri("org2")
    err, result = await client.subscribe(foreign)
    assert result is None
    assert err.startswith(f"Destination {foreign} belongs to membership org2; ")
    assert "subscribe with org2's credentials or pick one of: " in err
    assert "org1-m000" in err


async def test_subscribe_to_unknown_destination_is_refused(clients, generation):
    client = await clients("org1", generation)
    err, result = await client.subscribe("kld://app2app/m/org1/e/test/s/app2app/d/nope")
    assert result is None
    assert "does not exist" in err


async def test_subscribe_is_all_or_nothing(clients, pool, generation, emulator):
    client = await clients("org1", generation)
    own, foreign = pool.uri("org1"), pool.uri("org2")
    err, _ = await client.subscribe(own, foreign)
    assert foreign in err
    assert (await emulator.destination_status_async(own))["active"] is None


async def test_sending_from_another_membership_is_refused(clients, pool, generation, emulator):
    client = await clients("org1", generation)
    foreign, target = pool.uri("org2"), pool.uri("org2")
    err, result = await client.produce(proven(foreign, target, "spoofed"))
    assert result is None
    assert f"Sender destination {foreign} belongs to membership org2" in err
    assert (await emulator.destination_status_async(target))["log_length"] == 0


async def test_sending_to_an_unknown_destination_is_refused(clients, pool, generation):
    client = await clients("org1", generation)
    err, result = await client.produce(
        proven(pool.uri("org1"), "kld://app2app/m/org9/e/test/s/app2app/d/ghost", "x")
    )
    assert result is None
    assert "kld://app2app/m/org9/e/test/s/app2app/d/ghost does not exist" in err
    assert "addressbook" in err


async def test_sending_to_another_membership_is_allowed(clients, pool, generation):
    client = await clients("org1", generation)
    assert await client.produce(proven(pool.uri("org1"), pool.uri("org2"), "hi")) == (
        None,
        "Message sent.",
    )
