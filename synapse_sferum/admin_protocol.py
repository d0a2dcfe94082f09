"""The admin API's wire names, shared by the module (server) and sferumctl (client).

Pure constants, so the CLI can import them without importing Synapse.
"""

PREFIX = "/_synapse/client/sferum/admin/v1"
PROBLEMS_KEY = "ru.sferum.problems"  # the list of {file, line, column, message} of a bad roster
ROSTER_NAME_PARAM = "name"  # query parameter: the uploaded file's name, used in problems
