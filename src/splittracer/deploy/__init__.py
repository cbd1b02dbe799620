"""Everything that starts and stops participants: the Deployer protocol (:mod:`.base`) and its
implementations, local (:mod:`.local`), the warm agent (:mod:`.agent_client`, :mod:`.agent_server`)
and SSH (:mod:`.ssh`), and the choice between them (:mod:`.select`)."""
