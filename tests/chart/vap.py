"""Evaluates the chart's ValidatingAdmissionPolicy as the API server would, with cel-python and the
Kubernetes string functions its expressions use (split, substring, join), so that a test can hold
it against the controller's own allow-list check. Reads {"policy": VAP, "cases": [{"object",
"namespaceObject", "params"}]} on stdin; writes one {"allowed", "messages", "errors"} per case.

Only the evaluation is modelled: the API server also type-checks each expression against the
schemas when the policy is created, which this does not (see docs/operations.md)."""

import json
import sys

import celpy
from celpy import celtypes


def split(s, sep):
    return celtypes.ListType([celtypes.StringType(x) for x in str(s).split(str(sep))])


def substring(s, start, end=None):
    text = str(s)
    return celtypes.StringType(text[int(start):] if end is None else text[int(start):int(end)])


def join(items, sep=""):
    return celtypes.StringType(str(sep).join(str(x) for x in items))


FUNCTIONS = {"split": split, "substring": substring, "join": join}


def main():
    request = json.load(sys.stdin)
    spec = request["policy"]["spec"]
    env = celpy.Environment()
    compiled = lambda text: env.program(env.compile(text), functions=FUNCTIONS)
    variables = [(v["name"], compiled(v["expression"])) for v in spec.get("variables", [])]
    validations = [(compiled(v["expression"]), compiled(v["messageExpression"]))
                   for v in spec["validations"]]
    results = []
    for case in request["cases"]:
        activation = {name: celpy.json_to_cel(case[name])
                      for name in ("object", "namespaceObject", "params")}
        result = {"allowed": True, "messages": [], "errors": []}
        try:
            values = {}
            for name, program in variables:
                activation["variables"] = celtypes.MapType(values)
                values[celtypes.StringType(name)] = program.evaluate(activation)
            activation["variables"] = celtypes.MapType(values)
            for check, message in validations:
                verdict = check.evaluate(activation)
                if not isinstance(verdict, celtypes.BoolType):
                    result["errors"].append(f"not a bool: {verdict!r}")
                elif not verdict:
                    result["allowed"] = False
                    result["messages"].append(str(message.evaluate(activation)))
        except Exception as e:  # an evaluation error: the API server would deny (failurePolicy Fail)
            result["errors"].append(repr(e))
        results.append(result)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
