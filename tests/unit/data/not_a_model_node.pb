
abn"Relu